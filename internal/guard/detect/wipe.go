package detect

import (
	"fmt"
	"time"

	"github.com/custodyhq/custody/internal/watch"
)

// Wipe catches mass deletion early. Burst counts a principal's
// unexplained deletes (not of files it just created, not replaced by a
// compressed copy or a conversion, not recreated at once as git does)
// but signals only at its thresholds; Wipe turns each such delete past
// WipeThreshold in Burst's window into its own Strong signal, at most
// wipeCap a window. With Burst's own signal that makes a wipe of a few
// dozen files critical within a second, where Burst alone would wait for
// hundreds.
//
// A delete is judged one event late: if the principal's next event
// recreates the same path (unlink then create, as git checkout does), the
// delete was a replacement and signals nothing.
//
// Wipe reads the Burst it was given, which must observe each event first.
type Wipe struct {
	b         *Burst
	threshold int
	per       map[principal]*wipeState
}

// WipeThreshold is how many unexplained deletes in Burst's window a
// principal may make before each further one is a signal.
const WipeThreshold = 25

const wipeCap = 5

type wipeState struct {
	pending    *Signal
	pendingKey uint64
	sent       int
	since      time.Time // start of the window sent counts in
}

// NewWipe returns a Wipe reading b's counts.
func NewWipe(b *Burst) *Wipe {
	return &Wipe{b: b, threshold: WipeThreshold, per: map[principal]*wipeState{}}
}

// Name is "wipe".
func (w *Wipe) Name() string { return "wipe" }

// Observe judges the principal's previous delete, then this event.
func (w *Wipe) Observe(in Input) []Signal {
	e := in.Event
	p := principalOf(e.Principal)
	st := w.per[p]
	var out []Signal
	if st != nil && st.pending != nil {
		if !(e.Kind == watch.Create && pathKey(e.Path) == st.pendingKey) {
			out = append(out, *st.pending)
			st.sent++
		}
		st.pending = nil
	}
	if e.Kind != watch.Delete || e.Dir {
		return out
	}
	bs := w.b.per[p]
	if bs == nil {
		return out
	}
	n := bs.count.total[opDelete]
	th := w.threshold + w.b.allowance[p]
	if n <= th {
		return out
	}
	if st == nil {
		if len(w.per) >= maxBurstPrincipals {
			clear(w.per)
		}
		st = &wipeState{since: e.Time}
		w.per[p] = st
	}
	if e.Time.Sub(st.since) > w.b.window {
		st.since, st.sent = e.Time, 0
	}
	if st.sent >= wipeCap {
		return out
	}
	st.pending = &Signal{Detector: w.Name(), Strength: Strong, Time: e.Time, Path: e.Path,
		Reason: fmt.Sprintf("%s: %d deletes of files it did not create or replace within %s (threshold %d)", p, n, w.b.window, th)}
	st.pendingKey = pathKey(e.Path)
	return out
}
