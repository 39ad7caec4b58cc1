package schedule

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/custodyhq/custody/internal/catalog"
)

// Run snapshots and pushes as they fall due until ctx ends, then waits for
// the snapshot and push in progress (they get ctx, so they end early) and
// returns nil. Only one Run may be active at a time.
func (s *Scheduler) Run(ctx context.Context) error {
	if !s.active.CompareAndSwap(false, true) {
		return errors.New("schedule: Run is already running")
	}
	defer s.active.Store(false)
	s.resume()
	s.log.Info("schedule: running", "datasets", len(s.datasets), "offsites", len(s.offsites))

	var wg sync.WaitGroup
	stop := func() bool { return false }
	defer func() {
		stop()
		wg.Wait()
		s.log.Info("schedule: stopped")
	}()
	for ctx.Err() == nil {
		stop()
		seen := s.pokes.Load() // before looking, so a poke during the look wakes us again
		s.mu.Lock()
		now := s.clock.Now()
		s.enqueueDue(now)
		s.dispatch(ctx, &wg, now)
		stop = func() bool { return false }
		if next := s.nextWake(now); !next.IsZero() {
			stop = s.clock.AfterFunc(next.Sub(now), s.poke)
		}
		s.idle, s.idleSeen = true, seen
		s.mu.Unlock()

		select {
		case <-ctx.Done():
		case <-s.wake:
		}
		s.mu.Lock()
		s.idle = false
		s.mu.Unlock()
	}
	return nil
}

// resume loads the last snapshot and push times from before this process.
// A time in the future (the clock was set back) counts as now.
func (s *Scheduler) resume() {
	snaps := make([]time.Time, len(s.datasets))
	if s.lastSnap != nil {
		for i, d := range s.datasets {
			snaps[i] = s.lastSnap(d.name)
		}
	}
	pushes := make([]time.Time, len(s.offsites))
	if s.lastPush != nil {
		for i, o := range s.offsites {
			pushes[i] = s.lastPush(o.name)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.started = s.clock.Now()
	for i, d := range s.datasets {
		d.last = later(d.last, notAfter(snaps[i], s.started))
	}
	for i, o := range s.offsites {
		o.last = later(o.last, notAfter(pushes[i], s.started))
	}
}

// enqueueDue queues every dataset and offsite whose automatic run is due.
func (s *Scheduler) enqueueDue(now time.Time) {
	for _, d := range s.datasets {
		if t, why := s.datasetDue(d); !t.IsZero() && !t.After(now) {
			d.queued = why
			s.snapQueue = append(s.snapQueue, d)
		}
	}
	for _, o := range s.offsites {
		if t, why := o.due(s.started); !t.IsZero() && !t.After(now) {
			o.queued = why
			s.pushQueue = append(s.pushQueue, o)
		}
	}
}

// nextWake is the earliest automatic run due after now; zero if none.
func (s *Scheduler) nextWake(now time.Time) time.Time {
	var next time.Time
	consider := func(t time.Time) {
		if t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, d := range s.datasets {
		t, _ := s.datasetDue(d)
		consider(t)
	}
	for _, o := range s.offsites {
		t, _ := o.due(s.started)
		consider(t)
	}
	return next
}

// dispatch starts the head of each queue whose worker is free.
func (s *Scheduler) dispatch(ctx context.Context, wg *sync.WaitGroup, now time.Time) {
	if !s.snapBusy && len(s.snapQueue) > 0 {
		d := s.snapQueue[0]
		s.snapQueue = s.snapQueue[1:]
		reason := d.queued
		d.queued, d.running, s.snapBusy = "", true, true
		seen := d.changes.Load() // changes after this are not known to be in the snapshot
		wg.Go(func() {
			err := s.snapshot(ctx, d.name, reason)
			s.snapshotDone(ctx, d, reason, now, seen, err)
		})
	}
	if !s.pushBusy && len(s.pushQueue) > 0 {
		o := s.pushQueue[0]
		s.pushQueue = s.pushQueue[1:]
		reason := o.queued
		o.queued, o.running, s.pushBusy = "", true, true
		wg.Go(func() {
			err := s.push(ctx, o.name)
			s.pushDone(ctx, o, reason, now, err)
		})
	}
}

func (s *Scheduler) snapshotDone(ctx context.Context, d *dataset, reason string, start time.Time, seen uint64, err error) {
	s.mu.Lock()
	d.running, s.snapBusy = false, false
	now := s.clock.Now()
	switch {
	case err == nil:
		d.succeeded(start)
		// See Changed for why this order cannot lose a change.
		d.dirtySince.Store(0)
		if d.changes.Load() != seen {
			d.dirtySince.CompareAndSwap(0, start.UnixNano())
		}
		s.log.Info("schedule: snapshot taken", "dataset", d.name, "reason", reason, "took", now.Sub(start))
	case ctx.Err() != nil:
		d.interrupted(now, reason, err)
		s.log.Info("schedule: snapshot interrupted by shutdown", "dataset", d.name, "reason", reason, "err", err)
	default:
		wait := d.failed(now, reason, err)
		s.log.Warn("schedule: snapshot failed", "dataset", d.name, "reason", reason, "failures", d.failures, "retry_in", wait, "err", err)
	}
	s.mu.Unlock()
	s.poke()
}

func (s *Scheduler) pushDone(ctx context.Context, o *job, reason string, start time.Time, err error) {
	s.mu.Lock()
	o.running, s.pushBusy = false, false
	now := s.clock.Now()
	switch {
	case err == nil:
		o.succeeded(start)
		s.log.Info("schedule: offsite push done", "offsite", o.name, "reason", reason, "took", now.Sub(start))
	case errors.Is(err, catalog.ErrGateClosed):
		// Not a fault to back off from: the gate stays closed until an
		// operator opens it, so look again at the next interval.
		o.paused, o.lastErr, o.failures, o.retry = true, err.Error(), 0, ""
		o.holdUntil = time.Time{}
		if o.every > 0 {
			o.holdUntil = start.Add(o.every)
		}
		s.log.Warn("schedule: offsite push paused by the zero-trust gate", "offsite", o.name, "next_try", o.holdUntil, "err", err)
	case ctx.Err() != nil:
		o.interrupted(now, reason, err)
		s.log.Info("schedule: offsite push interrupted by shutdown", "offsite", o.name, "err", err)
	default:
		wait := o.failed(now, reason, err)
		s.log.Warn("schedule: offsite push failed", "offsite", o.name, "failures", o.failures, "retry_in", wait, "err", err)
	}
	s.mu.Unlock()
	s.poke()
}

// datasetDue is when d's next automatic snapshot is due and why: its
// cadence or backoff (job.due), or its quiet deadline — Quiet after the
// last change, but no later than capAfter after it became dirty — if
// that is earlier. Zero if none is planned.
func (s *Scheduler) datasetDue(d *dataset) (time.Time, string) {
	t, why := d.due(s.started)
	if d.running || d.queued != "" || d.retry != "" || d.quiet == 0 {
		return t, why
	}
	since := d.dirtySince.Load()
	if since == 0 {
		return t, why
	}
	q := earlier(time.Unix(0, d.lastChange.Load()).Add(d.quiet), time.Unix(0, since).Add(d.capAfter))
	q = later(q, d.holdUntil)
	if t.IsZero() || q.Before(t) {
		return q, reasonQuiet
	}
	return t, why
}

// due is when j's next automatic run is due and why, from its cadence and
// any backoff or pause; zero if none is planned or one is queued or
// running. started is when Run started: a never-run job is due then.
func (j *job) due(started time.Time) (time.Time, string) {
	switch {
	case j.running || j.queued != "":
		return time.Time{}, ""
	case j.retry != "":
		return j.holdUntil, j.retry
	case j.every == 0:
		return time.Time{}, ""
	case j.last.IsZero():
		if started.IsZero() {
			return time.Time{}, ""
		}
		return later(started, j.holdUntil), reasonStart
	}
	return later(j.last.Add(j.every), j.holdUntil), reasonScheduled
}

func (j *job) succeeded(start time.Time) {
	j.last = later(j.last, start)
	j.failures, j.lastErr, j.retry, j.holdUntil, j.paused = 0, "", "", time.Time{}, false
}

// failed records a failure and returns how long to wait before the retry.
func (j *job) failed(now time.Time, reason string, err error) time.Duration {
	j.failures++
	j.lastErr = err.Error()
	wait := backoff(j.failures, j.every)
	j.retry, j.holdUntil = reason, now.Add(wait)
	return wait
}

// interrupted records a run cut short by shutdown: not a failure, so the
// next Run retries it at once.
func (j *job) interrupted(now time.Time, reason string, err error) {
	j.lastErr = err.Error()
	j.retry, j.holdUntil = reason, now
}

// backoff is the wait after the n-th consecutive failure: firstBackoff
// doubled n-1 times, capped at every (if set) and at maxBackoff.
func backoff(n int, every time.Duration) time.Duration {
	limit := maxBackoff
	if every > 0 && every < limit {
		limit = every
	}
	d := firstBackoff
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// notAfter is t, or now if t is later (the clock was set back).
func notAfter(t, now time.Time) time.Time {
	if t.After(now) {
		return now
	}
	return t
}
