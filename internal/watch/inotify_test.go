package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/custodyhq/custody/internal/testkit"
)

// inotifyRun is an Inotify running in the background for a test.
type inotifyRun struct {
	t      *testing.T
	s      *Inotify
	out    chan Event
	done   chan struct{}
	err    error // Run's, once done is closed
	marks  int
	cancel context.CancelFunc
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) { w.t.Logf("%s", p); return len(p), nil }

func newTestInotify(t *testing.T, roots ...string) *Inotify {
	t.Helper()
	log := slog.New(slog.NewTextHandler(testLogWriter{t}, nil))
	s, err := NewInotify(roots, InotifyOptions{Logger: log})
	if err != nil {
		t.Fatalf("NewInotify: %v", err)
	}
	return s
}

// runInotify runs s until the test ends; out has room for buffered events.
func runInotify(t *testing.T, s *Inotify, buffered int) *inotifyRun {
	ctx, cancel := context.WithCancel(context.Background())
	r := &inotifyRun{t: t, s: s, out: make(chan Event, buffered), done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(r.done)
		r.err = s.Run(ctx, r.out)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(testkit.Long):
			t.Errorf("Run did not return %v after cancel", testkit.Long)
		}
	})
	return r
}

func startInotify(t *testing.T, roots ...string) *inotifyRun {
	t.Helper()
	return runInotify(t, newTestInotify(t, roots...), 1024)
}

// next reads one event; events sent before Run returned come first.
func (r *inotifyRun) next(timeout <-chan time.Time, got []Event) Event {
	r.t.Helper()
	select {
	case e := <-r.out:
		return e
	case <-r.done:
		select {
		case e := <-r.out:
			return e
		default:
		}
		r.t.Fatalf("Run returned %v; events so far: %v", r.err, got)
	case <-timeout:
		r.t.Fatalf("timed out; events so far: %v", got)
	}
	return Event{}
}

// until reads events up to and including the first that ok accepts.
func (r *inotifyRun) until(ok func(Event) bool) []Event {
	r.t.Helper()
	var got []Event
	timeout := time.After(testkit.Long)
	for {
		e := r.next(timeout, got)
		got = append(got, e)
		if ok(e) {
			return got
		}
	}
}

// mark creates a file in dir and returns the events before its Create:
// events come in order, so that is everything caused before it.
func (r *inotifyRun) mark(dir string) []Event {
	r.t.Helper()
	r.marks++
	name := filepath.Join(dir, fmt.Sprintf(".mark%d", r.marks))
	touchFile(r.t, name)
	got := r.until(func(e Event) bool { return e.Kind == Create && e.Path == name })
	return got[:len(got)-1]
}

// expect reads len(want) events and compares them with want.
func (r *inotifyRun) expect(want ...Event) {
	r.t.Helper()
	var got []Event
	timeout := time.After(testkit.Long)
	for len(got) < len(want) {
		got = append(got, r.next(timeout, got))
	}
	if diff := cmp.Diff(want, got, ignoreTime); diff != "" {
		r.t.Errorf("events (-want +got):\n%s", diff)
	}
}

// quiet checks that nothing more was reported before a mark in dir.
func (r *inotifyRun) quiet(dir string) {
	r.t.Helper()
	if got := r.mark(dir); len(got) > 0 {
		r.t.Errorf("unexpected events: %v", got)
	}
}

// returned waits for Run to return and gives its error.
func (r *inotifyRun) returned() error {
	r.t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(testkit.Long):
		r.t.Fatal("Run did not return")
		return nil
	}
}

func touchFile(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// writeExisting writes data at the start of the file at path, which must
// exist, neither creating nor truncating it, so that a write is all
// inotify sees.
func writeExisting(t *testing.T, path, data string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var ignoreTime = cmpopts.IgnoreFields(Event{}, "Time")

// The tests wait for each change to be reported before making the next,
// and after a new directory for the walk of it to end (quiet): inotify
// looks at a directory only when it learns that it was made, and what
// happens in it before that is only found by walking it, if it still
// exists then.

func TestInotifyReportsEachKind(t *testing.T) {
	root := t.TempDir()
	r := startInotify(t, root)
	f, d, g := filepath.Join(root, "f"), filepath.Join(root, "d"), filepath.Join(root, "d", "g")

	touchFile(t, f)
	r.expect(Event{Kind: Create, Path: f, Root: root})
	writeExisting(t, f, "x")
	r.expect(Event{Kind: Modify, Path: f, Root: root})
	mustDo(t, os.Chmod(f, 0o600))
	r.expect(Event{Kind: Attrib, Path: f, Root: root})
	mustDo(t, os.Mkdir(d, 0o755))
	r.expect(Event{Kind: Create, Path: d, Root: root, Dir: true})
	r.quiet(root)
	mustDo(t, os.Chmod(d, 0o700))
	mustDo(t, os.Chmod(d, 0o755))
	r.expect(Event{Kind: Attrib, Path: d, Root: root, Dir: true}, Event{Kind: Attrib, Path: d, Root: root, Dir: true})
	r.quiet(root) // once each, though d's watch and root's both see them
	mustDo(t, os.Rename(f, g))
	r.expect(Event{Kind: Rename, Path: g, OldPath: f, Root: root})
	writeExisting(t, g, "y")
	r.expect(Event{Kind: Modify, Path: g, Root: root})
	mustDo(t, os.Remove(g))
	r.expect(Event{Kind: Delete, Path: g, Root: root})
	mustDo(t, os.Remove(d))
	r.expect(Event{Kind: Delete, Path: d, Root: root, Dir: true})
	r.quiet(root)

	if r.s.Name() != "inotify" || r.s.Attributes() {
		t.Errorf("Name, Attributes = %q, %v; want inotify, false", r.s.Name(), r.s.Attributes())
	}
}

func TestInotifyFollowsADirectoryRenamedInTheTree(t *testing.T) {
	root := t.TempDir()
	a, c := filepath.Join(root, "a"), filepath.Join(root, "c")
	mustDo(t, os.MkdirAll(filepath.Join(a, "b", "deep"), 0o755))
	r := startInotify(t, root)

	mustDo(t, os.Rename(a, c))
	r.expect(Event{Kind: Rename, Path: c, OldPath: a, Root: root, Dir: true})
	f := filepath.Join(c, "b", "deep", "f")
	touchFile(t, f)
	r.expect(Event{Kind: Create, Path: f, Root: root})
	writeExisting(t, f, "x")
	r.expect(Event{Kind: Modify, Path: f, Root: root})
	mustDo(t, os.RemoveAll(c))
	r.expect(
		Event{Kind: Delete, Path: f, Root: root},
		Event{Kind: Delete, Path: filepath.Join(c, "b", "deep"), Root: root, Dir: true},
		Event{Kind: Delete, Path: filepath.Join(c, "b"), Root: root, Dir: true},
		Event{Kind: Delete, Path: c, Root: root, Dir: true},
	)
	r.quiet(root) // and no second Delete from the directories' own watches
}

func TestInotifyReportsNestedDirectoriesMadeAtOnce(t *testing.T) {
	root := t.TempDir()
	r := startInotify(t, root)
	const n = 20
	var files []string
	for i := range n {
		top := filepath.Join(root, fmt.Sprint("n", i))
		f := filepath.Join(top, "a", "b", "c", "f")
		mustDo(t, os.MkdirAll(filepath.Dir(f), 0o755)) // mkdir -p a/b/c && touch a/b/c/f
		touchFile(t, f)
		files = append(files, f)
	}
	seen := map[string]bool{}
	for _, e := range r.mark(root) {
		if e.Kind == Create {
			seen[e.Path] = true
		}
	}
	for _, f := range files {
		for p := f; p != root; p = filepath.Dir(p) {
			if !seen[p] {
				t.Errorf("no Create for %s", p)
			}
		}
	}

	// Every new directory is watched: writes in the deepest are seen.
	for _, f := range files {
		writeExisting(t, f, "x")
	}
	modified := map[string]bool{}
	for _, e := range r.mark(root) {
		if e.Kind == Modify {
			modified[e.Path] = true
		}
	}
	for _, f := range files {
		if !modified[f] {
			t.Errorf("no Modify for %s", f)
		}
	}
}

func TestInotifyKeepsOddNamesExact(t *testing.T) {
	root := t.TempDir()
	r := startInotify(t, root)
	for _, name := range []string{"with space", "new\nline", "\xff\xfe", "tab\tquote\"back\\slash", " ← arrow", "-dash", "%q"} {
		f, d := filepath.Join(root, name), filepath.Join(root, name+".d")
		touchFile(t, f)
		r.expect(Event{Kind: Create, Path: f, Root: root})
		mustDo(t, os.Mkdir(d, 0o755))
		r.expect(Event{Kind: Create, Path: d, Root: root, Dir: true})
		r.quiet(root)
		moved := filepath.Join(d, name)
		mustDo(t, os.Rename(f, moved))
		r.expect(Event{Kind: Rename, Path: moved, OldPath: f, Root: root})
		renamed := filepath.Join(root, name+" "+name)
		mustDo(t, os.Rename(d, renamed))
		r.expect(Event{Kind: Rename, Path: renamed, OldPath: d, Root: root, Dir: true})
		mustDo(t, os.Remove(filepath.Join(renamed, name)))
		r.expect(Event{Kind: Delete, Path: filepath.Join(renamed, name), Root: root})
	}
	r.quiet(root)
}

func TestInotifyReportsNothingOutsideItsRoots(t *testing.T) {
	parent := t.TempDir()
	root, sibling, outside := filepath.Join(parent, "in"), filepath.Join(parent, "in2"), filepath.Join(parent, "out")
	for _, d := range []string{root, sibling, outside, filepath.Join(outside, "d")} {
		mustDo(t, os.Mkdir(d, 0o755))
	}
	touchFile(t, filepath.Join(outside, "y"))
	touchFile(t, filepath.Join(outside, "d", "inside"))
	r := startInotify(t, root)

	touchFile(t, filepath.Join(sibling, "x"))
	touchFile(t, filepath.Join(parent, "x"))
	r.quiet(root)
	z := filepath.Join(root, "z")
	touchFile(t, z)
	r.expect(Event{Kind: Create, Path: z, Root: root})
	mustDo(t, os.Rename(z, filepath.Join(outside, "z")))
	// It waits for a new name that never comes.
	r.expect(Event{Kind: Delete, Path: z, Root: root, Detail: map[string]string{"rename": "unpaired"}})
	mustDo(t, os.Rename(filepath.Join(outside, "y"), filepath.Join(root, "y")))
	r.expect(Event{Kind: Create, Path: filepath.Join(root, "y"), Root: root})
	mustDo(t, os.Rename(filepath.Join(outside, "d"), filepath.Join(root, "d")))
	r.expect(
		Event{Kind: Create, Path: filepath.Join(root, "d"), Root: root, Dir: true},
		Event{Kind: Create, Path: filepath.Join(root, "d", "inside"), Root: root, Detail: map[string]string{"found": "scan"}},
	)
	touchFile(t, filepath.Join(outside, "after"))
	r.quiet(root)
}

func TestInotifyRecordsABurstOrReportsOverflow(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "burst")
	mustDo(t, os.Mkdir(dir, 0o755))
	r := startInotify(t, root)
	const n = 20000
	for i := range n {
		touchFile(t, filepath.Join(dir, fmt.Sprint(i)))
	}
	created := map[string]bool{}
	overflows := 0
	for _, e := range r.mark(root) {
		switch e.Kind {
		case Create:
			created[e.Path] = true
		case Overflow:
			overflows++
			if e.Path != root || e.Root != root {
				t.Errorf("Overflow for %q (root %q), want %q", e.Path, e.Root, root)
			}
		}
	}
	t.Logf("%d of %d creates, %d overflows", len(created), n, overflows)
	if overflows == 0 {
		for i := range n {
			if p := filepath.Join(dir, fmt.Sprint(i)); !created[p] {
				t.Fatalf("no Create for %s and no Overflow", p)
			}
		}
	}
}

func TestInotifyReportsOverflowWhenItFallsBehind(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	s := newTestInotify(t, a, b)
	s.q.mu.Lock()
	s.q.limit = 10
	s.q.mu.Unlock()
	r := runInotify(t, s, 0) // nobody reads yet: Run blocks, the queue fills
	for i := range 200 {
		touchFile(t, filepath.Join(a, fmt.Sprint(i)))
	}
	newDir := filepath.Join(a, "made-while-lost", "deeper")
	mustDo(t, os.MkdirAll(newDir, 0o755))
	// Run is blocked sending its first event; the queue fills behind it.
	testkit.WaitFor(t, testkit.Long, "the queue to drop events", func() bool {
		s.q.mu.Lock()
		defer s.q.mu.Unlock()
		return s.q.dropped > 0
	})

	got := r.until(func(e Event) bool { return e.Kind == Overflow && e.Root == b })
	s.q.mu.Lock()
	s.q.limit = inotifyQueueLimit // room for what follows
	s.q.mu.Unlock()
	var over []Event
	for _, e := range got {
		if e.Kind == Overflow {
			over = append(over, e)
		}
	}
	if len(over) != 2 || over[0].Path != a || over[0].Count == 0 || over[1].Path != b {
		t.Fatalf("overflows = %+v, want one for %s with a count, then one for %s", over, a, b)
	}
	// The directory made while events were lost is watched after all.
	f := filepath.Join(newDir, "f")
	touchFile(t, f)
	found := false
	for _, e := range r.mark(a) {
		found = found || (e.Kind == Create && e.Path == f)
	}
	if !found {
		t.Errorf("no Create for %s after the overflow", f)
	}
}

func TestInotifyReportsRootsGone(t *testing.T) {
	parent := t.TempDir()
	a, b := filepath.Join(parent, "a"), filepath.Join(parent, "b")
	mustDo(t, os.MkdirAll(filepath.Join(a, "d"), 0o755))
	mustDo(t, os.MkdirAll(filepath.Join(b, "d"), 0o755))
	touchFile(t, filepath.Join(a, "d", "x"))
	r := startInotify(t, a, b)

	mustDo(t, os.RemoveAll(a))
	r.expect(
		Event{Kind: Delete, Path: filepath.Join(a, "d", "x"), Root: a},
		Event{Kind: Delete, Path: filepath.Join(a, "d"), Root: a, Dir: true},
		Event{Kind: Delete, Path: a, Root: a, Dir: true, Detail: map[string]string{"root": "deleted"}},
	)
	// b is still watched.
	if got := r.mark(b); len(got) != 0 {
		t.Errorf("unexpected events %v", got)
	}

	moved := filepath.Join(parent, "b-moved")
	mustDo(t, os.Rename(b, moved))
	touchFile(t, filepath.Join(moved, "d", "after")) // not under a root any more
	r.expect(Event{Kind: Delete, Path: b, Root: b, Dir: true, Detail: map[string]string{"root": "moved"}})
	if err := r.returned(); !errors.Is(err, ErrRootGone) {
		t.Errorf("Run = %v, want ErrRootGone", err)
	}
	for len(r.out) > 0 {
		t.Errorf("event after the last root went: %v", <-r.out)
	}
}

func TestInotifySurvivesDirectoriesDeletedWhileAdded(t *testing.T) {
	root := t.TempDir()
	r := startInotify(t, root)
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := range 200 {
				top := filepath.Join(root, fmt.Sprint(w, "-", i))
				if err := os.MkdirAll(filepath.Join(top, "y", "z"), 0o755); err != nil {
					t.Error(err)
					return
				}
				os.RemoveAll(top)
			}
		})
	}
	// Read while they run so that Run keeps up.
	stop := make(chan struct{})
	go func() { wg.Wait(); close(stop) }()
	for stopped := false; !stopped; {
		select {
		case <-r.out:
		case <-stop:
			stopped = true
		}
	}
	r.mark(root) // Run is alive and still watching
	r.cancel()
	r.returned()
	if len(r.s.dirs) != 1 || r.s.dirs[root] == nil {
		var dirs []string
		for d := range r.s.dirs {
			dirs = append(dirs, d)
		}
		t.Errorf("watching %q after all was deleted, want only the root", dirs)
	}
}

func TestInotifyStopsOnCancel(t *testing.T) {
	root := t.TempDir()
	s := newTestInotify(t, root)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, make(chan Event)) }() // nobody reads
	for i := range 100 {
		touchFile(t, filepath.Join(root, fmt.Sprint(i)))
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v, want context.Canceled", err)
		}
	case <-time.After(testkit.Long):
		t.Fatalf("Run did not return within %v of cancel", testkit.Long)
	}
	select {
	case <-s.pumpDone:
	default:
		t.Error("the pump goroutine outlived Run")
	}
	if err := s.Run(t.Context(), make(chan Event)); err == nil {
		t.Error("a second Run succeeded")
	}
}

func TestNewInotifyRefusesWhatItCannotWatch(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	touchFile(t, file)
	link := filepath.Join(dir, "link")
	mustDo(t, os.Symlink(dir, link))
	for _, roots := range [][]string{nil, {filepath.Join(dir, "missing")}, {file}, {link}} {
		if s, err := NewInotify(roots, InotifyOptions{}); err == nil {
			s.Close()
			t.Errorf("NewInotify(%q) succeeded", roots)
		}
	}
}
