package schedule

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/testkit"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type call struct {
	name, reason string
	at           time.Time
}

// harness runs a Scheduler on a fake clock with fake Snapshot and Push
// functions that record their calls and, if a release channel is set,
// wait for a token on it (or for ctx to end) before returning.
type harness struct {
	t      *testing.T
	clk    *fakeClock
	s      *Scheduler
	snaps  chan call
	pushes chan call

	// Set before start.
	snapRelease, pushRelease chan struct{}
	snapErr, pushErr         func(name string) error

	blocked   atomic.Int32 // fakes waiting for a release
	inSnap    atomic.Int32 // Snapshot calls in progress
	maxInSnap atomic.Int32
}

func newHarness(t *testing.T, opts Options) *harness {
	t.Helper()
	h := &harness{t: t, clk: &fakeClock{now: t0}, snaps: make(chan call, 100), pushes: make(chan call, 100)}
	opts.Clock = h.clk
	opts.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	if opts.Snapshot == nil {
		opts.Snapshot = h.fakeSnapshot
	}
	if opts.Push == nil {
		opts.Push = h.fakePush
	}
	s, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.s = s
	return h
}

func (h *harness) fakeSnapshot(ctx context.Context, dataset, reason string) error {
	n := h.inSnap.Add(1)
	defer h.inSnap.Add(-1)
	for m := h.maxInSnap.Load(); n > m && !h.maxInSnap.CompareAndSwap(m, n); m = h.maxInSnap.Load() {
	}
	h.snaps <- call{dataset, reason, h.clk.Now()}
	h.hold(ctx, h.snapRelease)
	if h.snapErr != nil {
		return h.snapErr(dataset)
	}
	return nil
}

func (h *harness) fakePush(ctx context.Context, offsite string) error {
	h.pushes <- call{offsite, "", h.clk.Now()}
	h.hold(ctx, h.pushRelease)
	if h.pushErr != nil {
		return h.pushErr(offsite)
	}
	return nil
}

func (h *harness) hold(ctx context.Context, release chan struct{}) {
	if release == nil {
		return
	}
	h.blocked.Add(1)
	select {
	case <-release: // release already took it off blocked
	case <-ctx.Done():
		h.blocked.Add(-1)
	}
}

// start runs the scheduler until the test ends, and waits for it to settle.
func (h *harness) start() {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.s.Run(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				h.t.Errorf("Run returned %v, want nil", err)
			}
		case <-time.After(testkit.Long):
			h.t.Errorf("Run did not return after its context ended")
		}
	})
	h.settle()
}

// settle waits until Run has acted on every event so far and is waiting,
// and every snapshot or push in progress is held by a release channel.
func (h *harness) settle() {
	h.t.Helper()
	deadline := time.Now().Add(testkit.Long)
	for {
		s := h.s
		s.mu.Lock()
		busy := 0
		if s.snapBusy {
			busy++
		}
		if s.pushBusy {
			busy++
		}
		ok := s.idle && s.pokes.Load() == s.idleSeen && busy == int(h.blocked.Load())
		s.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatal("scheduler did not settle")
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// advance moves the clock once Run has acted on everything before (a
// Changed pokes Run without waiting: Run must plan from the time of the
// change, not from after the jump), then waits for Run to act on the jump.
func (h *harness) advance(d time.Duration) {
	h.t.Helper()
	h.settle()
	h.clk.advance(d)
	h.settle()
}

func (h *harness) release(ch chan struct{}) {
	h.t.Helper()
	// Off blocked before the token is taken, so settle cannot mistake the
	// released call for a held one.
	h.blocked.Add(-1)
	select {
	case ch <- struct{}{}:
	case <-time.After(testkit.Long):
		h.t.Fatal("nothing to release")
	}
	h.settle()
}

func (h *harness) expect(ch chan call, name, reason string, at time.Time) {
	h.t.Helper()
	select {
	case c := <-ch:
		if c.name != name || c.reason != reason || !c.at.Equal(at) {
			h.t.Fatalf("got call %s %q at %s, want %s %q at %s", c.name, c.reason, c.at.Sub(t0), name, reason, at.Sub(t0))
		}
	case <-time.After(testkit.Long):
		h.t.Fatalf("no call, want %s %q at t0+%s", name, reason, at.Sub(t0))
	}
}

func (h *harness) expectNone() {
	h.t.Helper()
	h.settle()
	select {
	case c := <-h.snaps:
		h.t.Fatalf("unexpected snapshot of %s (%q) at t0+%s", c.name, c.reason, c.at.Sub(t0))
	case c := <-h.pushes:
		h.t.Fatalf("unexpected push to %s at t0+%s", c.name, c.at.Sub(t0))
	default:
	}
}

func (h *harness) dataset(name string) DatasetStatus {
	h.t.Helper()
	ds, _ := h.s.Status()
	for _, d := range ds {
		if d.Name == name {
			return d
		}
	}
	h.t.Fatalf("no status for dataset %s", name)
	return DatasetStatus{}
}

func (h *harness) offsite(name string) OffsiteStatus {
	h.t.Helper()
	_, os := h.s.Status()
	for _, o := range os {
		if o.Name == name {
			return o
		}
	}
	h.t.Fatalf("no status for offsite %s", name)
	return OffsiteStatus{}
}

func wantTime(t *testing.T, what string, got, want time.Time) {
	t.Helper()
	if !got.Equal(want) {
		t.Fatalf("%s = %s, want %s", what, fmtT(got), fmtT(want))
	}
}

func fmtT(t time.Time) string {
	if t.IsZero() {
		return "zero"
	}
	return "t0+" + t.Sub(t0).String()
}

// fakeClock is a Clock that moves only when a test calls advance.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at time.Time
	f  func()
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) func() bool {
	if d <= 0 {
		f()
		return func() bool { return false }
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		i := slices.Index(c.timers, t)
		if i < 0 {
			return false
		}
		c.timers = slices.Delete(c.timers, i, i+1)
		return true
	}
}

// advance moves the clock by d and runs, in order, the timers that fell due.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*fakeTimer
	c.timers = slices.DeleteFunc(c.timers, func(t *fakeTimer) bool {
		if t.at.After(c.now) {
			return false
		}
		due = append(due, t)
		return true
	})
	c.mu.Unlock()
	slices.SortFunc(due, func(a, b *fakeTimer) int { return a.at.Compare(b.at) })
	for _, t := range due {
		t.f()
	}
}
