package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"
)

// Job is work a request started and a client polls: a snapshot, a
// restore or a push. Jobs live in the server's memory; a restarted
// daemon has none (their effects are in the vault and the ledger).
type Job struct {
	ID       string    `json:"id"`
	Kind     string    `json:"kind"` // snapshot, restore, push
	Subject  string    `json:"subject"`
	State    string    `json:"state"` // queued, running, done, failed
	Created  time.Time `json:"created"`
	Finished time.Time `json:"finished,omitzero"`
	Error    string    `json:"error,omitempty"`
	Result   any       `json:"result,omitempty"`

	stage string // for the data-scientist's check when it is polled
	by    string // the token id that started it
}

// maxJobs bounds the finished jobs kept for polling.
const maxJobs = 1000

// jobs runs and remembers jobs. It owns their goroutines: close cancels
// them and waits.
type jobs struct {
	now    func() time.Time
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	m      map[string]*Job
	order  []string
	sem    map[string]chan struct{} // per kind: how many run at once
}

func newJobs(now func() time.Time) *jobs {
	ctx, cancel := context.WithCancel(context.Background())
	return &jobs{now: now, ctx: ctx, cancel: cancel, m: map[string]*Job{},
		sem: map[string]chan struct{}{"snapshot": make(chan struct{}, 2), "restore": make(chan struct{}, 2), "push": make(chan struct{}, 1)}}
}

// start runs fn as a new job of kind and returns a copy of it as queued.
func (js *jobs) start(kind, subject, stage, by string, fn func(ctx context.Context) (any, error)) Job {
	b := make([]byte, 8)
	rand.Read(b)
	j := &Job{ID: "job_" + hex.EncodeToString(b), Kind: kind, Subject: subject, State: "queued", Created: js.now().UTC(), stage: stage, by: by}
	js.mu.Lock()
	js.m[j.ID] = j
	js.order = append(js.order, j.ID)
	for len(js.order) > maxJobs {
		if old := js.m[js.order[0]]; old != nil && (old.State == "queued" || old.State == "running") {
			break
		}
		delete(js.m, js.order[0])
		js.order = js.order[1:]
	}
	snap := *j
	js.mu.Unlock()
	js.wg.Go(func() {
		sem := js.sem[kind]
		select {
		case sem <- struct{}{}:
			defer func() { <-sem }()
		case <-js.ctx.Done():
			js.finish(j, nil, js.ctx.Err())
			return
		}
		js.set(j, "running")
		res, err := fn(js.ctx)
		js.finish(j, res, err)
	})
	return snap
}

func (js *jobs) set(j *Job, state string) {
	js.mu.Lock()
	j.State = state
	js.mu.Unlock()
}

func (js *jobs) finish(j *Job, res any, err error) {
	js.mu.Lock()
	defer js.mu.Unlock()
	j.Finished, j.Result = js.now().UTC(), res
	if err != nil {
		j.State, j.Error = "failed", err.Error()
		return
	}
	j.State = "done"
}

// get returns a copy of job id of kind.
func (js *jobs) get(kind, id string) (Job, bool) {
	js.mu.Lock()
	defer js.mu.Unlock()
	j, ok := js.m[id]
	if !ok || j.Kind != kind {
		return Job{}, false
	}
	return *j, true
}

func (js *jobs) close() {
	js.cancel()
	js.wg.Wait()
}
