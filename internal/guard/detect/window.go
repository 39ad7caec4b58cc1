package detect

import (
	"hash/maphash"
	"time"
)

// windowSlots is how many steps a sliding window is cut into: a count
// "in the last window" is the sum of the current step and the
// windowSlots-1 before it, so it covers between (windowSlots-1)/windowSlots
// of the window and all of it.
const windowSlots = 10

// slidingCount counts operations of a few kinds over a sliding window of
// windowSlots steps, in O(1) per event and fixed memory. Steps are
// numbered by event time (UnixNano / step); an event older than the
// newest step but still inside the window is counted in its own step, an
// older one is dropped.
type slidingCount struct {
	step  int64 // nanoseconds
	head  int64 // the newest step seen
	slots [windowSlots]slot
	total [burstOps]int
}

type slot struct {
	id int64
	n  [burstOps]int
}

func (w *slidingCount) stepOf(t time.Time) int64 {
	ns := t.UnixNano()
	id := ns / w.step
	if ns < 0 && ns%w.step != 0 {
		id--
	}
	return id
}

// advance moves the window so that step id is its newest.
func (w *slidingCount) advance(id int64) {
	if id <= w.head {
		return
	}
	if id-w.head >= windowSlots {
		w.slots = [windowSlots]slot{}
		w.total = [burstOps]int{}
	} else {
		for s := w.head + 1; s <= id; s++ {
			sl := &w.slots[slotIndex(s)]
			for k, n := range sl.n {
				w.total[k] -= n
			}
			*sl = slot{}
		}
	}
	for s := max(w.head+1, id-windowSlots+1); s <= id; s++ {
		w.slots[slotIndex(s)].id = s
	}
	w.head = id
}

// add counts n operations of kind op in step id.
func (w *slidingCount) add(id int64, op, n int) {
	w.advance(id)
	if id <= w.head-windowSlots {
		return
	}
	sl := &w.slots[slotIndex(id)]
	if sl.id != id {
		return
	}
	sl.n[op] += n
	w.total[op] += n
}

// undo takes back n operations of kind op counted in step id, if that
// step is still in the window.
func (w *slidingCount) undo(id int64, op, n int) {
	sl := &w.slots[slotIndex(id)]
	if id <= w.head-windowSlots || sl.id != id {
		return
	}
	n = min(n, sl.n[op])
	sl.n[op] -= n
	w.total[op] -= n
}

func (w *slidingCount) sum() int {
	s := 0
	for _, n := range w.total {
		s += n
	}
	return s
}

func slotIndex(id int64) int {
	i := id % windowSlots
	if i < 0 {
		i += windowSlots
	}
	return int(i)
}

// pathSeed hashes paths for the recent sets: a 64-bit hash stands for the
// path (a collision, at 2⁻⁶⁴ per pair, only mislabels one event).
var pathSeed = maphash.MakeSeed()

func pathKey(p string) uint64 { return maphash.String(pathSeed, p) }

// recentSet remembers keys for ttl, each with a small value, in insertion
// order. It holds at most limit entries, and draws every entry from a
// budget shared with other sets: when either is exhausted, its own oldest
// entries are forgotten first. Expired entries go as new ones come, so
// each operation is O(1) amortised.
type recentSet struct {
	ttl    int64
	limit  int
	budget *int
	m      map[uint64]recentEntry
	q      []recentItem
	head   int
	seq    uint64
}

// recentEntry is what a recentSet keeps per key: when it was put, and a
// step id, a count and a tag for the owner's use.
type recentEntry struct {
	at, id int64
	n      int
	tag    string
	seq    uint64 // which queue item put it
}

type recentItem struct {
	key uint64
	at  int64
	seq uint64
}

func newRecentSet(ttl time.Duration, limit int, budget *int) recentSet {
	return recentSet{ttl: int64(ttl), limit: limit, budget: budget}
}

func (s *recentSet) put(key uint64, e recentEntry) {
	s.expire(e.at)
	for s.head < len(s.q) && (len(s.q)-s.head >= s.limit || *s.budget <= 0) {
		s.pop()
	}
	if *s.budget <= 0 {
		return
	}
	if s.m == nil {
		s.m = map[uint64]recentEntry{}
	}
	s.seq++
	e.seq = s.seq
	s.m[key] = e
	s.q = append(s.q, recentItem{key, e.at, e.seq})
	*s.budget--
}

func (s *recentSet) get(key uint64, now int64) (recentEntry, bool) {
	s.expire(now)
	e, ok := s.m[key]
	if ok && now-e.at >= s.ttl {
		return e, false
	}
	return e, ok
}

func (s *recentSet) remove(key uint64) { delete(s.m, key) }

func (s *recentSet) expire(now int64) {
	for s.head < len(s.q) && now-s.q[s.head].at >= s.ttl {
		s.pop()
	}
}

func (s *recentSet) pop() {
	it := s.q[s.head]
	if e, ok := s.m[it.key]; ok && e.seq == it.seq {
		delete(s.m, it.key)
	}
	s.q[s.head] = recentItem{}
	s.head++
	*s.budget++
	switch {
	case s.head == len(s.q):
		s.q, s.head = s.q[:0], 0
		if cap(s.q) > 1024 {
			s.q, s.m = nil, nil // give back a burst's memory (the map is empty)
		}
	case s.head >= 1024 && 2*s.head >= len(s.q):
		n := copy(s.q, s.q[s.head:])
		s.q, s.head = s.q[:n], 0
	}
}

// release returns every entry to the budget (the owner is being dropped).
func (s *recentSet) release() {
	*s.budget += len(s.q) - s.head
	*s = recentSet{ttl: s.ttl, limit: s.limit, budget: s.budget}
}
