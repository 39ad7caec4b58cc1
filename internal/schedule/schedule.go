// Package schedule decides when the daemon snapshots each dataset and pushes
// to each offsite: on a fixed cadence, once a dataset has gone quiet after
// changes, or on request. It does not do the work itself: it calls the
// Snapshot and Push functions it is given, one snapshot and one push at a
// time, and retries a failure with exponential backoff.
//
// The reason handed to Snapshot is one of:
//
//	"start"     the dataset has a cadence but was never snapshotted
//	"scheduled" Every has passed since its last snapshot (also: overdue at start)
//	"quiet"     Quiet passed with no change after a change, or the dataset has
//	            been dirty for 10×Quiet while changes kept coming
//	"requested" SnapshotNow
package schedule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

const (
	reasonStart     = "start"
	reasonScheduled = "scheduled"
	reasonQuiet     = "quiet"
	reasonRequested = "requested"
)

const (
	firstBackoff = 30 * time.Second
	maxBackoff   = 15 * time.Minute
	// quietCap: a dataset dirty for quietCap×Quiet is snapshotted even
	// though changes keep coming, so a steady stream of writes still gets a
	// version at least that often. It does not depend on Every: a daily
	// cadence should not leave a busy dataset a day behind.
	quietCap = 10
)

// Dataset is one dataset's snapshot policy.
type Dataset struct {
	Name  string
	Every time.Duration // scheduled snapshot interval; 0: none
	Quiet time.Duration // snapshot once no change was seen for this long after a change; 0: never
}

// Offsite is one offsite's push policy.
type Offsite struct {
	Name  string
	Every time.Duration // push interval; 0: only on demand
}

// Options configure a Scheduler.
type Options struct {
	Datasets []Dataset
	Offsites []Offsite
	// Snapshot takes a version of dataset. Calls never overlap.
	Snapshot func(ctx context.Context, dataset, reason string) error
	// Push copies the vault to offsite. Calls never overlap each other, but
	// may overlap a Snapshot. An error wrapping catalog.ErrGateClosed
	// pauses the offsite until its next interval instead of backing off.
	Push func(ctx context.Context, offsite string) error
	// LastSnapshot and LastPush give the time of the last one before Run
	// started, zero if never, so that a restarted daemon keeps its cadence.
	// nil: never.
	LastSnapshot func(dataset string) time.Time
	LastPush     func(offsite string) time.Time
	// Clock is the time source; nil: the real clock.
	Clock Clock
	// Logger; nil: discard.
	Logger *slog.Logger
}

// Clock is the time source, replaceable so tests need not sleep.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f once d has passed, in its own goroutine; stop
	// cancels the call if it has not started and reports whether it did.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// DatasetStatus is what the API and metrics show about one dataset.
type DatasetStatus struct {
	Name       string
	Next       time.Time // when the next automatic snapshot is due (past: overdue); zero if none is planned or one is queued or running
	NextReason string    // the reason Next will be taken for
	Last       time.Time // start of the last successful snapshot
	LastError  string    // of the last attempt; "" if it succeeded
	Failures   int       // consecutive failed attempts
	Dirty      bool      // changed since the start of the last successful snapshot
	Queued     bool
	Running    bool
}

// OffsiteStatus is what the API and metrics show about one offsite.
type OffsiteStatus struct {
	Name      string
	Next      time.Time // when the next automatic push is due; zero if none is planned or one is queued or running
	Last      time.Time // start of the last successful push
	LastError string    // of the last attempt; "" if it succeeded
	Failures  int       // consecutive failed attempts, not counting paused ones
	Paused    bool      // the last push was refused by a closed zero-trust gate
	Queued    bool
	Running   bool
}

// Scheduler runs snapshots and pushes when they are due. Create it with
// New, feed it Changed events from any goroutine, and call Run.
type Scheduler struct {
	clock    Clock
	log      *slog.Logger
	snapshot func(ctx context.Context, dataset, reason string) error
	push     func(ctx context.Context, offsite string) error
	lastSnap func(string) time.Time
	lastPush func(string) time.Time

	// Read-only after New.
	datasets  []*dataset
	offsites  []*job
	dsByName  map[string]*dataset
	offByName map[string]*job

	wake   chan struct{} // capacity 1: "something changed, look again"
	pokes  atomic.Uint64 // how many times wake was signalled
	active atomic.Bool   // Run is running

	mu        sync.Mutex
	started   time.Time // when Run started; "start" snapshots are due then
	snapQueue []*dataset
	pushQueue []*job
	snapBusy  bool
	pushBusy  bool
	// idle and idleSeen let tests wait until Run has acted on every poke:
	// Run is blocked waiting and had seen idleSeen pokes before it looked.
	idle     bool
	idleSeen uint64
}

// job is the state shared by datasets and offsites; guarded by
// Scheduler.mu.
type job struct {
	name      string
	every     time.Duration
	last      time.Time // start of the last success
	queued    string    // reason it is queued for; "" if not queued
	running   bool
	failures  int
	lastErr   string
	retry     string    // reason to run again at holdUntil after a failure; "" none
	holdUntil time.Time // no automatic run before this (backoff or paused)
	paused    bool
}

// dataset adds the change tracking that Changed updates without a lock.
type dataset struct {
	job
	quiet    time.Duration
	capAfter time.Duration // quietCap × quiet, saturated

	changes    atomic.Uint64 // count of Changed calls
	lastChange atomic.Int64  // UnixNano of the latest Changed
	dirtySince atomic.Int64  // UnixNano of the oldest change not in a snapshot; 0: clean
}

// New checks opts and returns a Scheduler that is ready to Run.
func New(opts Options) (*Scheduler, error) {
	s := &Scheduler{
		clock:     opts.Clock,
		log:       opts.Logger,
		snapshot:  opts.Snapshot,
		push:      opts.Push,
		lastSnap:  opts.LastSnapshot,
		lastPush:  opts.LastPush,
		dsByName:  make(map[string]*dataset, len(opts.Datasets)),
		offByName: make(map[string]*job, len(opts.Offsites)),
		wake:      make(chan struct{}, 1),
	}
	if s.clock == nil {
		s.clock = realClock{}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	for _, d := range opts.Datasets {
		if d.Name == "" {
			return nil, errors.New("schedule: a dataset has no name")
		}
		if _, dup := s.dsByName[d.Name]; dup {
			return nil, fmt.Errorf("schedule: dataset %q is listed twice", d.Name)
		}
		if d.Every < 0 || d.Quiet < 0 {
			return nil, fmt.Errorf("schedule: dataset %q: intervals must not be negative (every %v, quiet %v)", d.Name, d.Every, d.Quiet)
		}
		ds := &dataset{job: job{name: d.Name, every: d.Every}, quiet: d.Quiet, capAfter: quietCap * d.Quiet}
		if d.Quiet > math.MaxInt64/quietCap {
			ds.capAfter = math.MaxInt64
		}
		s.datasets = append(s.datasets, ds)
		s.dsByName[d.Name] = ds
	}
	for _, o := range opts.Offsites {
		if o.Name == "" {
			return nil, errors.New("schedule: an offsite has no name")
		}
		if _, dup := s.offByName[o.Name]; dup {
			return nil, fmt.Errorf("schedule: offsite %q is listed twice", o.Name)
		}
		if o.Every < 0 {
			return nil, fmt.Errorf("schedule: offsite %q: interval must not be negative (every %v)", o.Name, o.Every)
		}
		j := &job{name: o.Name, every: o.Every}
		s.offsites = append(s.offsites, j)
		s.offByName[o.Name] = j
	}
	if len(s.datasets) > 0 && s.snapshot == nil {
		return nil, errors.New("schedule: datasets given but no Snapshot function")
	}
	if len(s.offsites) > 0 && s.push == nil {
		return nil, errors.New("schedule: offsites given but no Push function")
	}
	return s, nil
}

// Changed records a change in dataset: it is dirty, and its quiet timer
// starts again. It takes no lock and never blocks; unknown names are
// ignored (it is called for every file event).
func (s *Scheduler) Changed(dataset string) {
	d := s.dsByName[dataset]
	if d == nil {
		return
	}
	now := s.clock.Now().UnixNano()
	// The order matters: snapshotDone clears dirtySince and then reads
	// changes, we add to changes and then read dirtySince, so one of us
	// sees the other and a change is never lost.
	d.changes.Add(1)
	d.lastChange.Store(now) // racing callers may store out of order: off by nanoseconds, harmless
	if d.dirtySince.Load() == 0 && d.dirtySince.CompareAndSwap(0, now) {
		s.poke() // a new quiet deadline exists; later changes only move it later
	}
}

// Overflowed records that the watcher lost events for dataset; it counts as
// a change.
func (s *Scheduler) Overflowed(dataset string) {
	s.Changed(dataset)
}

// SnapshotNow queues a snapshot of dataset with reason "requested", even if
// it is backing off after a failure. A request while one is already queued
// is merged into it.
func (s *Scheduler) SnapshotNow(dataset string) {
	d := s.dsByName[dataset]
	if d == nil {
		s.log.Warn("schedule: snapshot requested for an unknown dataset", "dataset", dataset)
		return
	}
	s.mu.Lock()
	if d.queued == "" {
		d.queued = reasonRequested
		s.snapQueue = append(s.snapQueue, d)
	}
	s.mu.Unlock()
	s.poke()
}

// PushNow queues a push to offsite, even if it is backing off or paused. A
// request while one is already queued is merged into it.
func (s *Scheduler) PushNow(offsite string) {
	o := s.offByName[offsite]
	if o == nil {
		s.log.Warn("schedule: push requested for an unknown offsite", "offsite", offsite)
		return
	}
	s.mu.Lock()
	if o.queued == "" {
		o.queued = reasonRequested
		s.pushQueue = append(s.pushQueue, o)
	}
	s.mu.Unlock()
	s.poke()
}

// Status reports every dataset and offsite, in the order they were given.
func (s *Scheduler) Status() ([]DatasetStatus, []OffsiteStatus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ds := make([]DatasetStatus, 0, len(s.datasets))
	for _, d := range s.datasets {
		next, why := s.datasetDue(d)
		ds = append(ds, DatasetStatus{
			Name: d.name, Next: next, NextReason: why, Last: d.last,
			LastError: d.lastErr, Failures: d.failures, Dirty: d.dirtySince.Load() != 0,
			Queued: d.queued != "", Running: d.running,
		})
	}
	offs := make([]OffsiteStatus, 0, len(s.offsites))
	for _, o := range s.offsites {
		next, _ := o.due(s.started)
		offs = append(offs, OffsiteStatus{
			Name: o.name, Next: next, Last: o.last, LastError: o.lastErr,
			Failures: o.failures, Paused: o.paused, Queued: o.queued != "", Running: o.running,
		})
	}
	return ds, offs
}

// poke makes Run look at the state again.
func (s *Scheduler) poke() {
	s.pokes.Add(1)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}
