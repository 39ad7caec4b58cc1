package watch

import (
	"context"
	"strconv"
	"time"
)

// Coalesce merges bursts: events with the same (Path, Kind, Principal
// uid+pid) arriving within window are sent once, with Count = how many
// they were (never losing counts), at the end of the window (or when
// maxPending distinct keys are pending, flushing the oldest). Rename,
// Delete, Overflow and Rescan are never merged with others and keep their
// order relative to events for the same path (flush pending events for
// that path first).
//
// Modify, CloseWrite and Attrib events for a path with a pending Create
// from the same principal are folded into that Create: its Detail counts
// them ("modify": "3", "close-write": "1", "attrib": "1"), so nothing is
// lost and a new file costs one event (an archiver writes a file, closes
// it, then sets its times and mode: three more entries otherwise).
//
// The window of a key starts with its first event; the merged event
// carries that first event's Time and Detail. An incoming Count of 0
// stands for 1, and a merged event always has Count >= 1; unmerged kinds
// pass through as they came. A Rename also flushes what is pending for its
// OldPath, and an Overflow flushes everything pending: its tree is being
// rescanned, so what came before must come before.
//
// Coalesce returns nil when in is closed, after flushing everything, and
// ctx.Err() when ctx is done; what was still pending is then not sent.
// It does not close out.
func Coalesce(ctx context.Context, in <-chan Event, out chan<- Event, window time.Duration, maxPending int) error {
	c := &coalescer{
		ctx:    ctx,
		out:    out,
		window: window,
		max:    max(maxPending, 1),
		byKey:  make(map[coalesceKey]*coalesced),
		byPath: make(map[string][]*coalesced),
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var armed time.Time // the deadline timer is set for; zero when stopped

	for {
		if front := c.front(); front == nil {
			if !armed.IsZero() {
				timer.Stop()
				armed = time.Time{}
			}
		} else if !front.deadline.Equal(armed) {
			timer.Reset(time.Until(front.deadline))
			armed = front.deadline
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-in:
			if !ok {
				return c.flushAll()
			}
			if err := c.add(e, time.Now()); err != nil {
				return err
			}
		case now := <-timer.C:
			armed = time.Time{}
			if err := c.flushExpired(now); err != nil {
				return err
			}
		}
	}
}

// coalesceKey is what makes two events the same for merging.
type coalesceKey struct {
	path     string
	kind     Kind
	uidKnown bool
	uid      uint32
	pid      int
}

func coalesceKeyOf(e Event) coalesceKey {
	k := coalesceKey{path: e.Path, kind: e.Kind, pid: e.Principal.PID}
	if e.Principal.UID != nil {
		k.uidKnown, k.uid = true, *e.Principal.UID
	}
	return k
}

// merges reports whether events of kind k may be merged.
func coalescible(k Kind) bool {
	switch k {
	case Rename, Delete, Overflow, Rescan:
		return false
	}
	return true
}

func coalesceCount(e Event) int { return max(e.Count, 1) }

// coalesced is one key's merged event waiting for its window to end.
type coalesced struct {
	ev       Event // Count holds the running total
	key      coalesceKey
	deadline time.Time
	sent     bool
	folded   [len(foldedKinds)]int // a Create's folded events, by kind
}

// foldedKinds are the kinds a creator's events fold into its Create as.
var foldedKinds = [...]Kind{Modify, CloseWrite, Attrib}

func foldedIndex(k Kind) int {
	for i, f := range foldedKinds {
		if k == f {
			return i
		}
	}
	return -1
}

// event is the merged event, with its folded counts in Detail.
func (p *coalesced) event() Event {
	e := p.ev
	if p.folded == [len(foldedKinds)]int{} {
		return e
	}
	d := make(map[string]string, len(e.Detail)+len(foldedKinds))
	for k, v := range e.Detail {
		d[k] = v
	}
	for i, n := range p.folded {
		if n > 0 {
			had, _ := strconv.Atoi(d[string(foldedKinds[i])])
			d[string(foldedKinds[i])] = strconv.Itoa(had + n)
		}
	}
	e.Detail = d
	return e
}

type coalescer struct {
	ctx    context.Context
	out    chan<- Event
	window time.Duration
	max    int

	// order holds pending events by first arrival, which with one window
	// for all keys is also deadline order; sent entries are skipped.
	order  []*coalesced
	head   int
	byKey  map[coalesceKey]*coalesced
	byPath map[string][]*coalesced // in arrival order
}

func (c *coalescer) front() *coalesced {
	for c.head < len(c.order) && c.order[c.head].sent {
		c.order[c.head] = nil
		c.head++
	}
	if c.head == len(c.order) {
		c.order, c.head = c.order[:0], 0
		return nil
	}
	if c.head > 1024 && c.head*2 > len(c.order) {
		c.order = append(c.order[:0], c.order[c.head:]...)
		c.head = 0
	}
	return c.order[c.head]
}

func (c *coalescer) add(e Event, now time.Time) error {
	if !coalescible(e.Kind) {
		if err := c.flushPath(e.Path); err != nil {
			return err
		}
		if e.Kind == Rename && e.OldPath != "" {
			if err := c.flushPath(e.OldPath); err != nil {
				return err
			}
		}
		if e.Kind == Overflow {
			if err := c.flushAll(); err != nil {
				return err
			}
		}
		return c.send(e)
	}
	k := coalesceKeyOf(e)
	if p := c.byKey[k]; p != nil {
		p.ev.Count += coalesceCount(e)
		return nil
	}
	// Writes to a file the same process just created, and setting its
	// times and mode, are part of its creation: folded into the pending
	// Create as detail counts, they cost one ledger entry per new file
	// instead of four.
	if f := foldedIndex(e.Kind); f >= 0 {
		ck := k
		ck.kind = Create
		if p := c.byKey[ck]; p != nil {
			p.folded[f] += coalesceCount(e)
			return nil
		}
	}
	for len(c.byKey) >= c.max {
		if err := c.flush(c.front()); err != nil {
			return err
		}
	}
	e.Count = coalesceCount(e)
	p := &coalesced{ev: e, key: k, deadline: now.Add(c.window)}
	c.order = append(c.order, p)
	c.byKey[k] = p
	c.byPath[e.Path] = append(c.byPath[e.Path], p)
	return nil
}

// flush sends p and forgets it.
func (c *coalescer) flush(p *coalesced) error {
	p.sent = true
	delete(c.byKey, p.key)
	list := c.byPath[p.key.path]
	for i, q := range list {
		if q == p {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(c.byPath, p.key.path)
	} else {
		c.byPath[p.key.path] = list
	}
	return c.send(p.event())
}

func (c *coalescer) flushPath(path string) error {
	for {
		list := c.byPath[path]
		if len(list) == 0 {
			return nil
		}
		if err := c.flush(list[0]); err != nil {
			return err
		}
	}
}

func (c *coalescer) flushExpired(now time.Time) error {
	for p := c.front(); p != nil && !p.deadline.After(now); p = c.front() {
		if err := c.flush(p); err != nil {
			return err
		}
	}
	return nil
}

func (c *coalescer) flushAll() error {
	for p := c.front(); p != nil; p = c.front() {
		if err := c.flush(p); err != nil {
			return err
		}
	}
	return nil
}

func (c *coalescer) send(e Event) error {
	select {
	case c.out <- e:
		return nil
	case <-c.ctx.Done():
		return c.ctx.Err()
	}
}
