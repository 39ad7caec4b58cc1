package schedule

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/testkit"
)

func TestNewRejectsBadOptions(t *testing.T) {
	snap := func(context.Context, string, string) error { return nil }
	push := func(context.Context, string) error { return nil }
	ok := []Dataset{{Name: "a", Every: time.Hour, Quiet: time.Minute}}
	s3 := []Offsite{{Name: "s3", Every: time.Hour}}
	tests := []struct {
		name string
		opts Options
		want string // "" = accepted
	}{
		{"valid", Options{Datasets: ok, Offsites: s3, Snapshot: snap, Push: push}, ""},
		{"nothing", Options{}, ""},
		{"unnamed dataset", Options{Datasets: []Dataset{{Every: time.Hour}}, Snapshot: snap}, "dataset has no name"},
		{"duplicate dataset", Options{Datasets: []Dataset{{Name: "a"}, {Name: "a"}}, Snapshot: snap}, `dataset "a" is listed twice`},
		{"negative every", Options{Datasets: []Dataset{{Name: "a", Every: -time.Second}}, Snapshot: snap}, "must not be negative"},
		{"negative quiet", Options{Datasets: []Dataset{{Name: "a", Quiet: -time.Second}}, Snapshot: snap}, "must not be negative"},
		{"unnamed offsite", Options{Offsites: []Offsite{{}}, Push: push}, "offsite has no name"},
		{"duplicate offsite", Options{Offsites: []Offsite{{Name: "s3"}, {Name: "s3"}}, Push: push}, `offsite "s3" is listed twice`},
		{"negative push interval", Options{Offsites: []Offsite{{Name: "s3", Every: -1}}, Push: push}, "must not be negative"},
		{"no snapshot func", Options{Datasets: ok}, "no Snapshot function"},
		{"no push func", Options{Offsites: s3}, "no Push function"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.opts)
			if tt.want == "" {
				if err != nil || s == nil {
					t.Fatalf("New = %v, %v; want a scheduler", s, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestScheduledSnapshotsKeepTheirCadence(t *testing.T) {
	h := newHarness(t, Options{Datasets: []Dataset{{Name: "d", Every: time.Hour}}})
	h.snapRelease = make(chan struct{})
	h.start()
	h.expect(h.snaps, "d", "start", t0)

	// The cadence counts from the start of a snapshot, not its end.
	h.advance(10 * time.Minute)
	h.expectNone()
	h.release(h.snapRelease)
	d := h.dataset("d")
	wantTime(t, "Last", d.Last, t0)
	wantTime(t, "Next", d.Next, t0.Add(time.Hour))
	if d.NextReason != "scheduled" || d.Failures != 0 || d.LastError != "" {
		t.Fatalf("status after first snapshot = %+v", d)
	}

	h.advance(50*time.Minute - time.Second)
	h.expectNone()
	h.advance(time.Second)
	h.expect(h.snaps, "d", "scheduled", t0.Add(time.Hour))
	h.release(h.snapRelease)

	h.advance(time.Hour)
	h.expect(h.snaps, "d", "scheduled", t0.Add(2*time.Hour))
	h.release(h.snapRelease)
	wantTime(t, "Next", h.dataset("d").Next, t0.Add(3*time.Hour))
}

func TestResumeFromLastRun(t *testing.T) {
	tests := []struct {
		name       string
		last       time.Time
		wantAt     time.Time
		wantReason string
	}{
		{"never", time.Time{}, t0, "start"},
		{"long overdue", t0.Add(-3 * time.Hour), t0, "scheduled"},
		{"just due", t0.Add(-time.Hour), t0, "scheduled"},
		{"not yet due", t0.Add(-20 * time.Minute), t0.Add(40 * time.Minute), "scheduled"},
		{"last in the future counts as now", t0.Add(5 * time.Hour), t0.Add(time.Hour), "scheduled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			last := func(string) time.Time { return tt.last }
			h := newHarness(t, Options{
				Datasets:     []Dataset{{Name: "d", Every: time.Hour}},
				Offsites:     []Offsite{{Name: "o", Every: time.Hour}},
				LastSnapshot: last,
				LastPush:     last,
			})
			h.start()
			if wait := tt.wantAt.Sub(t0); wait > 0 {
				wantTime(t, "dataset Next", h.dataset("d").Next, tt.wantAt)
				wantTime(t, "offsite Next", h.offsite("o").Next, tt.wantAt)
				h.advance(wait - time.Second)
				h.expectNone()
				h.advance(time.Second)
			}
			h.expect(h.snaps, "d", tt.wantReason, tt.wantAt)
			h.expect(h.pushes, "o", "", tt.wantAt)
			h.settle()
			wantTime(t, "dataset Next after", h.dataset("d").Next, tt.wantAt.Add(time.Hour))
			wantTime(t, "offsite Next after", h.offsite("o").Next, tt.wantAt.Add(time.Hour))
		})
	}
}

func TestQuietSnapshotAfterChangesStop(t *testing.T) {
	h := newHarness(t, Options{Datasets: []Dataset{{Name: "d", Quiet: time.Minute}}})
	h.start()
	h.advance(time.Hour) // no change, no snapshot
	h.expectNone()
	start := t0.Add(time.Hour)

	h.s.Changed("d")
	h.settle()
	wantTime(t, "Next", h.dataset("d").Next, start.Add(time.Minute))
	h.advance(40 * time.Second)
	h.s.Changed("d") // restarts the quiet timer
	h.advance(40 * time.Second)
	h.expectNone()
	d := h.dataset("d")
	wantTime(t, "Next", d.Next, start.Add(100*time.Second))
	if !d.Dirty || d.NextReason != "quiet" {
		t.Fatalf("status before the quiet snapshot = %+v", d)
	}
	h.advance(20 * time.Second)
	h.expect(h.snaps, "d", "quiet", start.Add(100*time.Second))
	h.settle()
	if d := h.dataset("d"); d.Dirty || !d.Next.IsZero() {
		t.Fatalf("status after the quiet snapshot = %+v, want clean with nothing planned", d)
	}
	h.advance(time.Hour)
	h.expectNone()
}

func TestChangeDuringSnapshotKeepsDatasetDirty(t *testing.T) {
	for _, changeDuring := range []bool{false, true} {
		t.Run(fmt.Sprintf("change during snapshot %v", changeDuring), func(t *testing.T) {
			h := newHarness(t, Options{Datasets: []Dataset{{Name: "d", Quiet: time.Minute}}})
			h.snapRelease = make(chan struct{})
			h.start()
			h.s.Changed("d")
			h.advance(time.Minute)
			h.expect(h.snaps, "d", "quiet", t0.Add(time.Minute))
			h.advance(10 * time.Second)
			if changeDuring {
				h.s.Changed("d")
			}
			h.release(h.snapRelease)
			d := h.dataset("d")
			if d.Dirty != changeDuring {
				t.Fatalf("Dirty = %v after the snapshot, want %v", d.Dirty, changeDuring)
			}
			if !changeDuring {
				if !d.Next.IsZero() {
					t.Fatalf("Next = %s, want nothing planned", fmtT(d.Next))
				}
				h.advance(time.Hour)
				h.expectNone()
				return
			}
			second := t0.Add(70*time.Second + time.Minute)
			wantTime(t, "Next", d.Next, second)
			h.advance(second.Sub(h.clk.Now()))
			h.expect(h.snaps, "d", "quiet", second)
			h.release(h.snapRelease)
			if d := h.dataset("d"); d.Dirty {
				t.Fatalf("still dirty after the second snapshot: %+v", d)
			}
		})
	}
}

func TestContinuousChangesHitTheQuietCap(t *testing.T) {
	h := newHarness(t, Options{Datasets: []Dataset{{Name: "d", Quiet: time.Minute}}})
	h.start()
	// A change every 30s never leaves a quiet minute; after 10×Quiet of
	// being dirty the dataset is snapshotted anyway.
	for i := range 20 {
		h.s.Changed("d")
		h.advance(30 * time.Second)
		if i < 19 {
			h.expectNone()
		}
	}
	h.expect(h.snaps, "d", "quiet", t0.Add(10*time.Minute))
	h.settle()
	if d := h.dataset("d"); d.Dirty {
		t.Fatalf("dirty after the capped snapshot: %+v", d)
	}
	// The cap counts from the first change after that snapshot.
	for range 19 {
		h.s.Changed("d")
		h.advance(30 * time.Second)
	}
	h.expectNone()
	h.s.Changed("d")
	h.advance(30 * time.Second)
	h.expect(h.snaps, "d", "quiet", t0.Add(20*time.Minute))
}

func TestSnapshotsAreSerialised(t *testing.T) {
	h := newHarness(t, Options{
		Datasets: []Dataset{{Name: "a", Every: time.Hour}, {Name: "b", Every: time.Hour}, {Name: "c", Every: time.Hour}},
		Offsites: []Offsite{{Name: "o", Every: time.Hour}},
	})
	h.snapRelease = make(chan struct{})
	h.pushRelease = make(chan struct{})
	h.start()
	// All three are due at once; one runs, and the push runs beside it.
	h.expect(h.pushes, "o", "", t0)
	for i, name := range []string{"a", "b", "c"} {
		h.expect(h.snaps, name, "start", t0.Add(time.Duration(i)*time.Minute))
		h.expectNone()
		if n := h.inSnap.Load(); n != 1 {
			t.Fatalf("%d snapshots in progress, want 1", n)
		}
		h.s.SnapshotNow("a") // queued behind the others, at most once
		h.advance(time.Minute)
		h.release(h.snapRelease)
	}
	h.expect(h.snaps, "a", "requested", t0.Add(3*time.Minute))
	h.release(h.snapRelease)
	h.release(h.pushRelease)
	h.expectNone()
	if m := h.maxInSnap.Load(); m != 1 {
		t.Fatalf("at most %d snapshots ran at once, want 1", m)
	}
}

func TestNowRequestsCoalesce(t *testing.T) {
	tests := []struct {
		kind string
		now  func(s *Scheduler, name string)
	}{
		{"snapshot", (*Scheduler).SnapshotNow},
		{"push", (*Scheduler).PushNow},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			// No cadence: only requests run.
			h := newHarness(t, Options{Datasets: []Dataset{{Name: "x"}}, Offsites: []Offsite{{Name: "x"}}})
			h.snapRelease = make(chan struct{})
			h.pushRelease = make(chan struct{})
			calls, release, reason := h.snaps, h.snapRelease, "requested"
			if tt.kind == "push" {
				calls, release, reason = h.pushes, h.pushRelease, ""
			}
			for range 3 {
				tt.now(h.s, "x") // before Run: queued once
			}
			tt.now(h.s, "unknown") // ignored
			h.start()
			h.expect(calls, "x", reason, t0)
			h.expectNone()
			for range 5 {
				tt.now(h.s, "x") // while one runs: one more queued
			}
			h.advance(time.Second)
			h.release(release)
			h.expect(calls, "x", reason, t0.Add(time.Second))
			h.release(release)
			h.expectNone()
		})
	}
}

func TestFailedSnapshotBacksOff(t *testing.T) {
	s := time.Second
	tests := []struct {
		name   string
		every  time.Duration
		reason string
		waits  []time.Duration // between failed attempts; then one succeeds
	}{
		{"capped by the interval", 2 * time.Minute, "start", []time.Duration{30 * s, 60 * s, 120 * s, 120 * s}},
		{"capped at 15 minutes", 24 * time.Hour, "start", []time.Duration{30 * s, 60 * s, 120 * s, 240 * s, 480 * s, 900 * s, 900 * s}},
		{"requested", 0, "requested", []time.Duration{30 * s, 60 * s, 120 * s}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Options{Datasets: []Dataset{{Name: "d", Every: tt.every}}})
			var attempts atomic.Int32
			h.snapErr = func(string) error {
				if int(attempts.Add(1)) <= len(tt.waits) {
					return errors.New("vault: disk full")
				}
				return nil
			}
			if tt.every == 0 {
				h.s.SnapshotNow("d")
			}
			h.start()
			at := t0
			h.expect(h.snaps, "d", tt.reason, at)
			for i, wait := range tt.waits {
				h.settle()
				d := h.dataset("d")
				if d.Failures != i+1 || !strings.Contains(d.LastError, "disk full") || d.NextReason != tt.reason {
					t.Fatalf("after failure %d: status = %+v", i+1, d)
				}
				wantTime(t, "Next", d.Next, at.Add(wait))
				h.advance(wait - time.Second)
				h.expectNone()
				h.advance(time.Second)
				at = at.Add(wait)
				h.expect(h.snaps, "d", tt.reason, at)
			}
			h.settle()
			d := h.dataset("d")
			if d.Failures != 0 || d.LastError != "" {
				t.Fatalf("after success: status = %+v", d)
			}
			wantTime(t, "Last", d.Last, at)
			want := time.Time{}
			if tt.every > 0 {
				want = at.Add(tt.every)
			}
			wantTime(t, "Next", d.Next, want)
		})
	}
}

func TestGateClosedPushIsPausedNotBackedOff(t *testing.T) {
	gate := &catalog.GateClosedError{Step: "offsite push", Gates: []catalog.Gate{{ID: "g1", Reason: "ransomware", ClosedBy: "guard", ClosedAt: t0}}}
	tests := []struct {
		name         string
		err          error
		wantPaused   bool
		wantFailures int
		wantRetry    time.Time
	}{
		{"gate closed", fmt.Errorf("push o: %w", gate), true, 0, t0.Add(time.Hour)},
		{"other error", errors.New("s3: connection refused"), false, 1, t0.Add(30 * time.Second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Options{Offsites: []Offsite{{Name: "o", Every: time.Hour}}})
			var attempts atomic.Int32
			h.pushErr = func(string) error {
				if attempts.Add(1) == 1 {
					return tt.err
				}
				return nil
			}
			h.start()
			h.expect(h.pushes, "o", "", t0)
			h.settle()
			o := h.offsite("o")
			if o.Paused != tt.wantPaused || o.Failures != tt.wantFailures || o.LastError != tt.err.Error() {
				t.Fatalf("status after refusal = %+v", o)
			}
			wantTime(t, "Next", o.Next, tt.wantRetry)
			h.advance(tt.wantRetry.Sub(t0) - time.Second)
			h.expectNone()
			h.advance(time.Second)
			h.expect(h.pushes, "o", "", tt.wantRetry)
			h.settle()
			o = h.offsite("o")
			if o.Paused || o.Failures != 0 || o.LastError != "" {
				t.Fatalf("status after success = %+v", o)
			}
			wantTime(t, "Last", o.Last, tt.wantRetry)
		})
	}
}

func TestRunWaitsForSnapshotInProgress(t *testing.T) {
	entered, sawCancel, release := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var finished atomic.Bool
	h := newHarness(t, Options{
		Datasets: []Dataset{{Name: "d", Every: time.Hour}},
		Snapshot: func(ctx context.Context, _, _ string) error {
			close(entered)
			<-ctx.Done()
			close(sawCancel)
			<-release // a snapshot slow to stop
			finished.Store(true)
			return ctx.Err()
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var runErr error
	done := make(chan bool)
	go func() {
		runErr = h.s.Run(ctx)
		done <- finished.Load()
	}()
	waitFor(t, entered, "the snapshot to start")
	cancel()
	waitFor(t, sawCancel, "the snapshot to see its context end")
	// A moment's grace to catch an early return in the act; the check
	// that does not depend on it is fin, below.
	select {
	case <-done:
		t.Fatal("Run returned while the snapshot was still running")
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	select {
	case fin := <-done:
		if !fin {
			t.Fatal("Run returned before the snapshot finished")
		}
	case <-time.After(testkit.Long):
		t.Fatal("Run did not return")
	}
	if runErr != nil {
		t.Fatalf("Run = %v, want nil", runErr)
	}
	// Shutdown is not a failure to back off from.
	if d := h.dataset("d"); d.Failures != 0 || d.LastError != context.Canceled.Error() || d.Running {
		t.Fatalf("status after shutdown = %+v", d)
	}
}

func TestRunRefusesASecondRun(t *testing.T) {
	h := newHarness(t, Options{Datasets: []Dataset{{Name: "d"}}})
	h.start()
	if err := h.s.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("second Run = %v, want an error", err)
	}
}

func TestChangedNeverBlocks(t *testing.T) {
	h := newHarness(t, Options{Datasets: []Dataset{{Name: "d", Quiet: time.Minute}}})
	h.snapRelease = make(chan struct{})
	flood := func() {
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for range 10000 {
					h.s.Changed("d")
					h.s.Changed("unknown")
				}
			})
		}
		wg.Wait()
	}

	// Before Run: nothing reads the events yet.
	h.s.Overflowed("d")
	if d := h.dataset("d"); !d.Dirty {
		t.Fatalf("Overflowed did not mark the dataset dirty: %+v", d)
	}
	flood()
	h.start()
	wantTime(t, "Next", h.dataset("d").Next, t0.Add(time.Minute))
	h.advance(time.Minute)
	h.expect(h.snaps, "d", "quiet", t0.Add(time.Minute))

	// During a snapshot, from many goroutines at once.
	flood()
	h.release(h.snapRelease)
	if d := h.dataset("d"); !d.Dirty {
		t.Fatalf("changes during the snapshot were lost: %+v", d)
	}
}

func waitFor(t *testing.T, ch chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(testkit.Long):
		t.Fatalf("timed out waiting for %s", what)
	}
}
