package watch

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/custodyhq/custody/internal/testkit"
)

func uidPtr(u uint32) *uint32 { return &u }

func testActor(uid uint32, pid int) Principal { return Principal{UID: uidPtr(uid), PID: pid} }

// runCoalesce feeds events to Coalesce, closes in and returns what came out.
func runCoalesce(t *testing.T, events []Event, window time.Duration, maxPending int) []Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testkit.Long)
	defer cancel()
	in := make(chan Event)
	out := make(chan Event, len(events)+1)
	done := make(chan error, 1)
	go func() { done <- Coalesce(ctx, in, out, window, maxPending) }()
	for _, e := range events {
		in <- e
	}
	close(in)
	if err := <-done; err != nil {
		t.Fatalf("Coalesce: %v", err)
	}
	close(out)
	var got []Event
	for e := range out {
		got = append(got, e)
	}
	return got
}

func repeated(n int, e Event) []Event {
	s := make([]Event, n)
	for i := range s {
		s[i] = e
	}
	return s
}

func joined(parts ...[]Event) []Event {
	var s []Event
	for _, p := range parts {
		s = append(s, p...)
	}
	return s
}

func TestCoalesce(t *testing.T) {
	mod := func(path string, pid int) Event {
		return Event{Kind: Modify, Path: path, Principal: testActor(1000, pid)}
	}
	ev := func(k Kind, path string, pid int) Event {
		return Event{Kind: k, Path: path, Principal: testActor(1000, pid)}
	}
	n := func(e Event, count int) Event { e.Count = count; return e }
	tests := []struct {
		name       string
		in         []Event
		maxPending int
		want       []Event
	}{
		{
			name: "a thousand modifies by one pid are one event",
			in:   repeated(1000, mod("/d/f", 7)),
			want: []Event{n(mod("/d/f", 7), 1000)},
		},
		{
			name: "different pids are not merged",
			in:   joined(repeated(3, mod("/d/f", 7)), repeated(2, mod("/d/f", 8)), repeated(1, mod("/d/f", 7))),
			want: []Event{n(mod("/d/f", 7), 4), n(mod("/d/f", 8), 2)},
		},
		{
			name: "different uids are not merged",
			in:   []Event{mod("/d/f", 7), {Kind: Modify, Path: "/d/f", Principal: testActor(0, 7)}, {Kind: Modify, Path: "/d/f"}},
			want: []Event{n(mod("/d/f", 7), 1), {Kind: Modify, Path: "/d/f", Principal: testActor(0, 7), Count: 1}, {Kind: Modify, Path: "/d/f", Count: 1}},
		},
		{
			name: "a delete between modifies keeps its place",
			in:   joined(repeated(5, mod("/d/f", 7)), []Event{ev(Delete, "/d/f", 7)}, repeated(3, mod("/d/f", 7))),
			want: []Event{n(mod("/d/f", 7), 5), ev(Delete, "/d/f", 7), n(mod("/d/f", 7), 3)},
		},
		{
			name: "deletes are never merged",
			in:   repeated(3, ev(Delete, "/d/f", 7)),
			want: repeated(3, ev(Delete, "/d/f", 7)),
		},
		{
			name: "a rename flushes its old and new path first",
			in: []Event{mod("/d/a", 7), mod("/d/b", 7), mod("/d/c", 7),
				{Kind: Rename, Path: "/d/b", OldPath: "/d/a"}, mod("/d/a", 7)},
			want: []Event{n(mod("/d/b", 7), 1), n(mod("/d/a", 7), 1),
				{Kind: Rename, Path: "/d/b", OldPath: "/d/a"}, n(mod("/d/c", 7), 1), n(mod("/d/a", 7), 1)},
		},
		{
			name: "an overflow flushes everything first",
			in:   []Event{mod("/d/a", 7), mod("/d/b", 7), {Kind: Overflow, Path: "/d", Root: "/d"}, mod("/d/a", 7)},
			want: []Event{n(mod("/d/a", 7), 1), n(mod("/d/b", 7), 1), {Kind: Overflow, Path: "/d", Root: "/d"}, n(mod("/d/a", 7), 1)},
		},
		{
			name: "incoming counts add up",
			in:   []Event{n(mod("/d/f", 7), 10), mod("/d/f", 7), n(mod("/d/f", 7), 5)},
			want: []Event{n(mod("/d/f", 7), 16)},
		},
		{
			name:       "too many keys flush the oldest",
			maxPending: 2,
			in:         []Event{mod("/d/a", 7), mod("/d/b", 7), mod("/d/a", 7), mod("/d/c", 7), mod("/d/a", 7)},
			want:       []Event{n(mod("/d/a", 7), 2), n(mod("/d/b", 7), 1), n(mod("/d/c", 7), 1), n(mod("/d/a", 7), 1)},
		},
		{
			name: "kinds of one path come out in first-arrival order",
			in:   []Event{ev(Attrib, "/d/f", 7), mod("/d/f", 7), ev(Create, "/d/f", 8), mod("/d/f", 7)},
			want: []Event{n(ev(Attrib, "/d/f", 7), 1), n(mod("/d/f", 7), 2), n(ev(Create, "/d/f", 8), 1)},
		},
		{
			name: "writes and attribute changes by the creator fold into the create, counted",
			in: []Event{ev(Create, "/d/f", 7), mod("/d/f", 7), ev(CloseWrite, "/d/f", 7), mod("/d/f", 7),
				mod("/d/f", 8), ev(Attrib, "/d/f", 7), ev(Attrib, "/d/f", 8)},
			want: []Event{{Kind: Create, Path: "/d/f", Principal: testActor(1000, 7), Count: 1, Detail: map[string]string{"modify": "2", "close-write": "1", "attrib": "1"}},
				n(mod("/d/f", 8), 1), n(ev(Attrib, "/d/f", 8), 1)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			maxPending := tt.maxPending
			if maxPending == 0 {
				maxPending = 1000
			}
			got := runCoalesce(t, tt.in, time.Hour, maxPending)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCoalesceSendsAtTheEndOfTheWindow(t *testing.T) {
	const window = 50 * time.Millisecond
	in := make(chan Event)
	out := make(chan Event, 1000)
	done := make(chan error, 1)
	go func() { done <- Coalesce(t.Context(), in, out, window, 100) }()
	start := time.Now()
	for range 1000 {
		in <- Event{Kind: Modify, Path: "/d/f", Principal: testActor(1000, 7)}
	}
	// On a quiet machine the thousand arrive within one window and come
	// out as one event; on a loaded one they may span several windows.
	// Either way nothing comes out before the first window ends, and the
	// counts add up.
	total, events := 0, 0
	for total < 1000 {
		select {
		case e := <-out:
			if events == 0 {
				if elapsed := time.Since(start); elapsed < window {
					t.Errorf("sent after %v, before the %v window ended", elapsed, window)
				}
			}
			total += e.Count
			events++
		case <-time.After(testkit.Long):
			t.Fatalf("%d of 1000 counted in %d events, nothing more %v after a %v window", total, events, testkit.Long, window)
		}
	}
	if total != 1000 {
		t.Errorf("counts add up to %d, want 1000", total)
	}
	t.Logf("1000 modifies came out as %d events", events)
	close(in)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestCoalesceStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	in := make(chan Event)
	out := make(chan Event, 1) // filled, then nobody reads: Coalesce must not hang on it
	done := make(chan error, 1)
	go func() { done <- Coalesce(ctx, in, out, time.Millisecond, 100) }()
	in <- Event{Kind: Modify, Path: "/d/f"}
	testkit.WaitFor(t, testkit.Long, "the event to be sent when its window ended", func() bool { return len(out) == 1 })
	// Never merged, a Delete is sent as it comes: once Coalesce has taken
	// it from in, it is sending to the full out.
	in <- Event{Kind: Delete, Path: "/d/g"}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Coalesce = %v, want context.Canceled", err)
		}
	case <-time.After(testkit.Long):
		t.Fatal("Coalesce did not return after cancel")
	}
}

// TestCoalesceNeverLosesCounts feeds random streams and checks, for every
// path, that the unmergeable events come out in the same order and that
// between two of them every key has the same total count as went in.
func TestCoalesceNeverLosesCounts(t *testing.T) {
	paths := []string{"/d/a", "/d/b", "/d/c", "/d/e f", "/d/\xff"}
	kinds := []Kind{Create, Modify, Modify, Modify, CloseWrite, Attrib, Modify, Delete, Rename, Rescan, Overflow}
	for seed := range uint64(50) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 1))
			in := make([]Event, 2000+r.IntN(2000))
			for i := range in {
				k := kinds[r.IntN(len(kinds))]
				if k == Overflow && r.IntN(10) > 0 {
					k = Modify // rare
				}
				e := Event{Kind: k, Path: paths[r.IntN(len(paths))], Count: r.IntN(4)}
				switch r.IntN(3) {
				case 0:
					e.Principal = testActor(uint32(r.IntN(2)), 1+r.IntN(3))
				case 1:
					e.Principal = Principal{PID: r.IntN(2)}
				}
				if k == Rename {
					e.OldPath = paths[r.IntN(len(paths))]
				}
				if !coalescible(k) {
					e.Count = 0
				}
				in[i] = e
			}
			window := []time.Duration{0, time.Microsecond, time.Hour}[r.IntN(3)]
			got := runCoalesce(t, in, window, 1+r.IntN(8))
			want := coalesceSegments(in, paths)
			if diff := cmp.Diff(want, coalesceSegments(got, paths)); diff != "" {
				t.Errorf("per-path segments (-in +out):\n%s", diff)
			}
			for _, e := range got {
				if coalescible(e.Kind) && e.Count < 1 {
					t.Fatalf("sent %+v with Count %d", e, e.Count)
				}
			}
		})
	}
}

// segments splits, per path, the stream at each unmergeable event that
// orders it and sums the counts of each key in between.
func coalesceSegments(events []Event, paths []string) map[string][]map[string]int {
	seg := map[string][]map[string]int{}
	for _, p := range paths {
		seg[p] = []map[string]int{{}}
	}
	barrier := func(p, label string) {
		s := seg[p]
		s[len(s)-1]["|"+label] = 1
		seg[p] = append(s, map[string]int{})
	}
	for _, e := range events {
		switch {
		case e.Kind == Overflow:
			for _, p := range paths {
				barrier(p, "overflow")
			}
		case !coalescible(e.Kind):
			barrier(e.Path, string(e.Kind)+" "+e.OldPath)
			if e.Kind == Rename && e.OldPath != e.Path {
				barrier(e.OldPath, "rename to "+e.Path)
			}
		default:
			k := coalesceKeyOf(e)
			s := seg[e.Path]
			s[len(s)-1][fmt.Sprintf("%s %v %d %d", k.kind, k.uidKnown, k.uid, k.pid)] += coalesceCount(e)
			// Writes folded into a Create count as the writes they were.
			for _, folded := range []Kind{Modify, CloseWrite, Attrib} {
				if n, err := strconv.Atoi(e.Detail[string(folded)]); err == nil && e.Kind == Create {
					s[len(s)-1][fmt.Sprintf("%s %v %d %d", folded, k.uidKnown, k.uid, k.pid)] += n
				}
			}
		}
	}
	return seg
}
