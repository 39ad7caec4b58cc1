package detect

import (
	"testing"
	"time"
)

func TestSlidingCountForgetsStepsOlderThanTheWindow(t *testing.T) {
	w := slidingCount{step: int64(time.Second), head: -1 << 40}
	for s := range 15 {
		w.add(w.stepOf(at(float64(s))), opDelete, 10)
	}
	if got := w.sum(); got != 100 {
		t.Errorf("after 15 s at 10/s: %d, want the last 10 steps' 100", got)
	}
	w.add(w.stepOf(at(30)), opRename, 1)
	if got := w.sum(); got != 1 {
		t.Errorf("after a 15 s gap: %d, want 1", got)
	}
}

func TestSlidingCountTakesLateEventsInsideTheWindowOnly(t *testing.T) {
	w := slidingCount{step: int64(time.Second), head: -1 << 40}
	w.add(w.stepOf(at(20)), opDelete, 1)
	w.add(w.stepOf(at(15)), opDelete, 1) // late, inside
	w.add(w.stepOf(at(5)), opDelete, 1)  // late, outside
	if got := w.sum(); got != 2 {
		t.Errorf("sum %d, want 2", got)
	}
	w.undo(w.stepOf(at(15)), opDelete, 5) // more than there is
	if got := w.total[opDelete]; got != 1 {
		t.Errorf("after undo: %d, want 1", got)
	}
	w.undo(w.stepOf(at(1)), opDelete, 1) // a step long gone
	if got := w.sum(); got != 1 {
		t.Errorf("after undoing a gone step: %d, want 1", got)
	}
}

func TestRecentSetExpiresAndHonoursItsLimitAndBudget(t *testing.T) {
	budget := 10
	s := newRecentSet(time.Second, 4, &budget)
	ns := func(sec float64) int64 { return at(sec).UnixNano() }
	for i := range 6 {
		s.put(uint64(i), recentEntry{at: ns(float64(i) * 0.1)})
	}
	if _, ok := s.get(0, ns(0.6)); ok {
		t.Error("the oldest entry outlived the limit")
	}
	if _, ok := s.get(5, ns(0.6)); !ok {
		t.Error("the newest entry is gone")
	}
	if budget != 10-4 {
		t.Errorf("budget %d, want 6", budget)
	}
	if _, ok := s.get(5, ns(2)); ok {
		t.Error("an entry outlived its ttl")
	}
	if budget != 10 {
		t.Errorf("budget %d after expiry, want 10", budget)
	}
	// A key put twice keeps its newest value; the old one's expiry does
	// not take the new one with it.
	s.put(7, recentEntry{at: ns(3), n: 1})
	s.put(7, recentEntry{at: ns(3.5), n: 2})
	if e, ok := s.get(7, ns(4.2)); !ok || e.n != 2 {
		t.Errorf("re-put key: %+v %v", e, ok)
	}
	other := newRecentSet(time.Second, 100, &budget)
	for i := range 20 {
		other.put(uint64(i), recentEntry{at: ns(4.2)})
	}
	if budget < 0 {
		t.Errorf("budget %d", budget)
	}
	s.release()
	other.release()
	if budget != 10 {
		t.Errorf("budget %d after release, want 10", budget)
	}
}
