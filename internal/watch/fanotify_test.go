package watch

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/custodyhq/custody/internal/testkit"
)

// The tests watch directories under /tmp with real fanotify groups; the
// operations are done by a worker process (see fanotify_worker_test.go).

func TestFanotifyReportsEachKind(t *testing.T) {
	requireRoot(t)
	root := publicDir(t, 0o755)
	w := watch(t, root)
	wk := selfWorker(t)
	at := func(name string) string { return filepath.Join(root, name) }
	steps := []struct {
		name string
		do   func()
		want []shape
	}{
		{"create", func() { wk.do(t, "create", at("a")) },
			[]shape{{Create, at("a"), "", false}, {CloseWrite, at("a"), "", false}}},
		{"write", func() { wk.do(t, "append", at("a"), "data") },
			[]shape{{Modify, at("a"), "", false}, {CloseWrite, at("a"), "", false}}},
		{"chmod", func() { wk.do(t, "chmod", at("a"), "600") },
			[]shape{{Attrib, at("a"), "", false}}},
		{"rename", func() { wk.do(t, "rename", at("a"), at("b")) },
			[]shape{{Rename, at("b"), at("a"), false}}},
		{"delete", func() { wk.do(t, "remove", at("b")) },
			[]shape{{Delete, at("b"), "", false}}},
		{"mkdir", func() { wk.do(t, "mkdir", at("d")) },
			[]shape{{Create, at("d"), "", true}}},
		{"chmod dir", func() { wk.do(t, "chmod", at("d"), "700") },
			[]shape{{Attrib, at("d"), "", true}}},
		{"create in new dir", func() { wk.do(t, "create", at("d/f")) },
			[]shape{{Create, at("d/f"), "", false}, {CloseWrite, at("d/f"), "", false}}},
		{"rename dir", func() { wk.do(t, "rename", at("d"), at("e")) },
			[]shape{{Rename, at("e"), at("d"), true}}},
		{"delete in renamed dir", func() { wk.do(t, "remove", at("e/f")) },
			[]shape{{Delete, at("e/f"), "", false}}},
		{"rmdir", func() { wk.do(t, "remove", at("e")) },
			[]shape{{Delete, at("e"), "", true}}},
	}
	for _, s := range steps {
		s.do()
		got := w.mark(t, wk, root)
		if diff := cmp.Diff(s.want, shapes(got)); diff != "" {
			t.Fatalf("%s: events (-want +got):\n%s", s.name, diff)
		}
		for _, e := range got {
			p := e.Principal
			if p.UID == nil || *p.UID != 0 || p.PID != wk.pid() || p.Exe != wk.exe || p.User != "root" || e.Root != root {
				t.Errorf("%s: %s %s: principal %+v (uid %v), root %q; want uid 0 root, pid %d, exe %s, root %s",
					s.name, e.Kind, e.Path, p, p.UID, e.Root, wk.pid(), wk.exe, root)
			}
			if e.Detail != nil {
				t.Errorf("%s: %s %s: detail %v, want none", s.name, e.Kind, e.Path, e.Detail)
			}
		}
	}
}

func TestFanotifyAttributesAnotherUser(t *testing.T) {
	requireRoot(t)
	root := publicDir(t, 0o777)
	w := watch(t, root)
	wk := nobodyWorker(t)
	at := func(name string) string { return filepath.Join(root, name) }
	wk.do(t, "create", at("n"))
	wk.do(t, "append", at("n"), "x")
	wk.do(t, "chmod", at("n"), "600")
	wk.do(t, "rename", at("n"), at("m"))
	wk.do(t, "remove", at("m"))
	wk.do(t, "mkdir", at("nd"))
	wk.do(t, "remove", at("nd"))
	got := w.mark(t, wk, root)
	want := []shape{
		{Create, at("n"), "", false}, {CloseWrite, at("n"), "", false},
		{Modify, at("n"), "", false}, {CloseWrite, at("n"), "", false},
		{Attrib, at("n"), "", false},
		{Rename, at("m"), at("n"), false},
		{Delete, at("m"), "", false},
		{Create, at("nd"), "", true}, {Delete, at("nd"), "", true},
	}
	if diff := cmp.Diff(want, shapes(got), fanMergedCloseWrites); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
	for _, e := range got {
		p := e.Principal
		if p.UID == nil || *p.UID != 65534 || p.User != "nobody" || p.PID != wk.pid() || p.Exe != wk.exe {
			t.Errorf("%s %s: principal %+v (uid %v); want uid 65534 nobody, pid %d, exe %s", e.Kind, e.Path, p, p.UID, wk.pid(), wk.exe)
		}
	}

	// The same through the shell, whose redirection creates the file in
	// the shell's own process; it waits on stdin until the test has the
	// event.
	sh := exec.Command("setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
		"sh", "-c", `: > "$1"; read x`, "sh", at("by-sh"))
	stdin, err := sh.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	defer sh.Wait()
	defer stdin.Close()
	w.until(t, func(e Event) bool {
		if e.Kind != Create || e.Path != at("by-sh") {
			return false
		}
		shell, _ := filepath.EvalSymlinks("/bin/sh")
		p := e.Principal
		if p.UID == nil || *p.UID != 65534 || p.User != "nobody" || p.PID != sh.Process.Pid || p.Exe != shell {
			t.Errorf("create by sh: principal %+v (uid %v); want uid 65534 nobody, pid %d, exe %s", p, p.UID, sh.Process.Pid, shell)
		}
		return true
	})
}

// fanMergedCloseWrites stands for the kernel merging events on one name
// by one process while they are still queued (a test cannot make sure
// each was read before the next was queued): a run of create, modify,
// attrib and close-write events on one path becomes the set of its
// kinds, in the order Fanotify splits a merged event.
var fanMergedCloseWrites = cmp.Transformer("mergeQueued", func(s []shape) []shape {
	var out []shape
	for i := 0; i < len(s); {
		j := i
		kinds := map[Kind]shape{}
		for ; j < len(s) && s[j].Path == s[i].Path && s[j].Kind != Rename && s[j].Kind != Delete; j++ {
			kinds[s[j].Kind] = s[j]
		}
		if j == i {
			out = append(out, s[i])
			i++
			continue
		}
		for _, kb := range kindBits {
			if e, ok := kinds[kb.kind]; ok {
				out = append(out, e)
			}
		}
		i = j
	}
	return out
})

func TestFanotifyFollowsRenamedDirectoryTrees(t *testing.T) {
	requireRoot(t)
	root := publicDir(t, 0o755)
	// One tree known from the walk at start, one from mkdir events.
	if err := os.MkdirAll(filepath.Join(root, "old", "b", "c"), 0o755); err != nil {
		t.Fatal(err)
	}
	w := watch(t, root)
	wk := selfWorker(t)
	for _, d := range []string{"new", "new/b", "new/b/c"} {
		wk.do(t, "mkdir", filepath.Join(root, d))
	}
	w.mark(t, wk, root)
	for _, tree := range []string{"old", "new"} {
		from, to := filepath.Join(root, tree), filepath.Join(root, tree+"-renamed")
		wk.do(t, "rename", from, to)
		wk.do(t, "create", filepath.Join(to, "b", "c", "f"))
		got := w.mark(t, wk, root)
		want := []shape{
			{Rename, to, from, true},
			{Create, filepath.Join(to, "b", "c", "f"), "", false},
			{CloseWrite, filepath.Join(to, "b", "c", "f"), "", false},
		}
		if diff := cmp.Diff(want, shapes(got)); diff != "" {
			t.Fatalf("%s: events (-want +got):\n%s", tree, diff)
		}
	}
}

func TestFanotifyWatchesFilesystemsMountedInsideARoot(t *testing.T) {
	requireRoot(t)
	root := publicDir(t, 0o755)
	mnt := filepath.Join(root, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("custody-test", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount a tmpfs to test with: %v", err)
	}
	// Lazily: the source keeps a directory of the mount open until Run
	// returns, after this cleanup is registered.
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	if err := os.Mkdir(filepath.Join(mnt, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	w := watch(t, root)
	wk := selfWorker(t)
	wk.do(t, "create", filepath.Join(mnt, "d", "f"))
	wk.do(t, "create", filepath.Join(root, "g"))
	got := w.mark(t, wk, root)
	want := []shape{
		{Create, filepath.Join(mnt, "d", "f"), "", false}, {CloseWrite, filepath.Join(mnt, "d", "f"), "", false},
		{Create, filepath.Join(root, "g"), "", false}, {CloseWrite, filepath.Join(root, "g"), "", false},
	}
	if diff := cmp.Diff(want, shapes(got)); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
}

func TestFanotifyKeepsNamesByteForByte(t *testing.T) {
	requireRoot(t)
	root := publicDir(t, 0o755)
	w := watch(t, root)
	wk := selfWorker(t)
	dir := filepath.Join(root, "dir with\nnewline \xff")
	names := []string{"with space", "new\nline", "bad\xff\xfeutf8", "\x01ctl\t", "ünïcode"}
	wk.do(t, "mkdir", dir)
	want := []shape{{Create, dir, "", true}}
	for _, n := range names {
		p := filepath.Join(dir, n)
		wk.do(t, "create", p)
		wk.do(t, "rename", p, p+" moved\n")
		wk.do(t, "remove", p+" moved\n")
		want = append(want, shape{Create, p, "", false}, shape{CloseWrite, p, "", false},
			shape{Rename, p + " moved\n", p, false}, shape{Delete, p + " moved\n", "", false})
	}
	got := w.mark(t, wk, root)
	if diff := cmp.Diff(want, shapes(got)); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
}

func TestFanotifyIgnoresEventsOutsideRoots(t *testing.T) {
	requireRoot(t)
	parent := publicDir(t, 0o755)
	root, sibling := filepath.Join(parent, "root"), filepath.Join(parent, "rootsibling")
	for _, d := range []string{root, sibling} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	w := watch(t, root)
	wk := selfWorker(t)
	wk.do(t, "create", filepath.Join(sibling, "a"))
	wk.do(t, "mkdir", filepath.Join(sibling, "d"))
	wk.do(t, "rename", filepath.Join(sibling, "a"), filepath.Join(sibling, "d", "b"))
	wk.do(t, "chmod", sibling, "700")
	wk.do(t, "create", filepath.Join(parent, "beside"))
	wk.do(t, "create", filepath.Join(root, "inside"))
	got := w.mark(t, wk, root)
	want := []shape{{Create, filepath.Join(root, "inside"), "", false}, {CloseWrite, filepath.Join(root, "inside"), "", false}}
	if diff := cmp.Diff(want, shapes(got)); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
}

func TestFanotifyDropsItsOwnEvents(t *testing.T) {
	requireRoot(t)
	root := publicDir(t, 0o755)
	w := watch(t, root)
	wk := selfWorker(t)
	if err := os.WriteFile(filepath.Join(root, "ledger"), []byte("own write"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := w.mark(t, wk, root); len(got) != 0 {
		t.Fatalf("own writes reported:%s", describe(got))
	}
}

func TestFanotifyBurstIsCompleteOrReportsOverflow(t *testing.T) {
	requireRoot(t)
	root := publicDir(t, 0o755)
	w := watch(t, root)
	wk := selfWorker(t)
	const n = 20000
	done := make(chan error, 1)
	go func() { done <- wk.try("many", root, "20000") }()
	created := make(map[string]bool)
	overflow := false
	timeout := time.After(2 * testkit.Long)
	for len(created) < n && !overflow {
		select {
		case e := <-w.events:
			switch e.Kind {
			case Create:
				if created[e.Path] {
					t.Fatalf("create of %s reported twice", e.Path)
				}
				created[e.Path] = true
			case Overflow:
				if e.Path != root || e.Root != root {
					t.Fatalf("overflow for %q (root %q), want %s", e.Path, e.Root, root)
				}
				overflow = true
			}
		case <-timeout:
			t.Fatalf("timed out with %d of %d creates and no overflow", len(created), n)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d of %d creates, overflow %v", len(created), n, overflow)
}

func TestFanotifyRenameAcrossRootBoundary(t *testing.T) {
	requireRoot(t)
	parent := publicDir(t, 0o755)
	root, outside := filepath.Join(parent, "root"), filepath.Join(parent, "outside")
	for _, d := range []string{root, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	w := watch(t, root)
	wk := selfWorker(t)
	wk.do(t, "create", filepath.Join(outside, "a"))
	wk.do(t, "rename", filepath.Join(outside, "a"), filepath.Join(root, "in"))
	wk.do(t, "rename", filepath.Join(root, "in"), filepath.Join(outside, "b"))
	wk.do(t, "mkdir", filepath.Join(outside, "d"))
	wk.do(t, "rename", filepath.Join(outside, "d"), filepath.Join(root, "d"))
	got := w.mark(t, wk, root)
	want := []Event{
		{Kind: Create, Path: filepath.Join(root, "in"), OldPath: filepath.Join(outside, "a"), Detail: map[string]string{"rename": "unpaired"}},
		{Kind: Delete, Path: filepath.Join(root, "in"), Detail: map[string]string{"rename": "unpaired", "moved_to": filepath.Join(outside, "b")}},
		{Kind: Create, Path: filepath.Join(root, "d"), OldPath: filepath.Join(outside, "d"), Dir: true, Detail: map[string]string{"rename": "unpaired"}},
	}
	opts := cmp.Options{fanIgnoreTimeAndPrincipal, cmp.FilterPath(func(p cmp.Path) bool { return p.String() == "Root" }, cmp.Ignore())}
	if diff := cmp.Diff(want, got, opts); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
	// The directory moved in is followed like any other.
	wk.do(t, "create", filepath.Join(root, "d", "x"))
	got = w.mark(t, wk, root)
	if len(got) == 0 || got[0].Path != filepath.Join(root, "d", "x") {
		t.Fatalf("after the move in, got:%s", describe(got))
	}
}

var fanIgnoreTimeAndPrincipal = cmp.FilterPath(func(p cmp.Path) bool {
	s := p.String()
	return s == "Time" || s == "Principal"
}, cmp.Ignore())

func TestFanotifyPlacesEventsInADirectoryDeletedWhileQueued(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		name   string
		forget bool // empty the directory cache, as if the directory had never been seen
		detail map[string]string
	}{
		{"known directory", false, nil},
		{"unknown directory", true, map[string]string{"unresolved": "1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := publicDir(t, 0o755)
			d := filepath.Join(root, "d")
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
			w := newWatching(t, root)
			if tc.forget {
				w.f.dirs.reset()
			}
			wk := selfWorker(t)
			// All queued before the source reads anything: d is gone then.
			wk.do(t, "create", filepath.Join(d, "f"))
			wk.do(t, "remove", filepath.Join(d, "f"))
			wk.do(t, "remove", d)
			w.start(t)
			got := w.mark(t, wk, root)
			want := []Event{
				{Kind: Create, Path: filepath.Join(d, "f"), Detail: tc.detail},
				{Kind: CloseWrite, Path: filepath.Join(d, "f"), Detail: tc.detail},
				{Kind: Delete, Path: filepath.Join(d, "f"), Detail: tc.detail},
				{Kind: Delete, Path: d, Dir: true},
			}
			if diff := cmp.Diff(want, got, fanIgnoreTimeAndPrincipal, cmp.FilterPath(func(p cmp.Path) bool { return p.String() == "Root" }, cmp.Ignore())); diff != "" {
				t.Fatalf("events (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFanotifyDropsEventsItCannotPlace(t *testing.T) {
	requireRoot(t)
	root := publicDir(t, 0o755)
	d := filepath.Join(root, "d")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	w := newWatching(t, root)
	defer w.f.Close()
	// Only the root known, and no handle can be opened (a deleted
	// directory's sometimes still opens while its inode is cached).
	for k, e := range w.f.dirs.in {
		if e.path != root {
			delete(w.f.dirs.in, k)
		}
	}
	mounts := w.f.dirs.mounts
	w.f.dirs.mounts = nil
	defer func() { w.f.dirs.mounts = mounts }()
	// Two workers: the kernel merges queued events on one name by one
	// process, and the create must stay an event of its own.
	maker, remover := selfWorker(t), selfWorker(t)
	maker.do(t, "create", filepath.Join(d, "f"))
	remover.do(t, "remove", filepath.Join(d, "f"))
	remover.do(t, "remove", d)
	// Read until the rmdir of d: the filesystem mark brings the events of
	// every other process too.
	var buf []byte
	chunk := make([]byte, readBufSize)
	for seen := false; !seen; {
		m, err := w.f.read(context.Background(), chunk)
		if err != nil {
			t.Fatal(err)
		}
		for b := chunk[:m]; len(b) > 0; {
			r, k, err := parseEvent(b)
			if err != nil {
				t.Fatal(err)
			}
			seen = seen || int(r.pid) == remover.pid() && r.mask&unix.FAN_ONDIR != 0
			b = b[k:]
		}
		buf = append(buf, chunk[:m]...)
	}
	n := len(buf)
	// The reads up to the create of d/f, as if the rest came in a later
	// read: nothing tells where d was. (The filesystem mark also brings
	// events of other processes, dropped here as their directories cannot
	// be opened either.)
	first := 0
	for first < n {
		r, m, err := parseEvent(buf[first:n])
		if err != nil {
			t.Fatal(err)
		}
		first += m
		if int(r.pid) == maker.pid() && r.mask&unix.FAN_CREATE != 0 {
			break
		}
	}
	out := make(chan Event, 64)
	if err := w.f.handleRead(context.Background(), buf[:first], out); err != nil {
		t.Fatal(err)
	}
	if err := w.f.handleRead(context.Background(), buf[first:n], out); err != nil {
		t.Fatal(err)
	}
	close(out)
	var got []Event
	for e := range out {
		got = append(got, e)
	}
	want := []shape{{Delete, filepath.Join(d, "f"), "", false}, {Delete, d, "", true}}
	if diff := cmp.Diff(want, shapes(got)); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
}

func TestFanotifyReportsRootsGoneAndBack(t *testing.T) {
	requireRoot(t)
	parent := publicDir(t, 0o755)
	a, b := filepath.Join(parent, "a"), filepath.Join(parent, "b")
	for _, d := range []string{a, b} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	w := watch(t, a, b)
	wk := selfWorker(t)

	wk.do(t, "create", filepath.Join(a, "x"))
	wk.do(t, "removeall", a)
	got := w.mark(t, wk, b)
	want := []Event{
		{Kind: Create, Path: filepath.Join(a, "x"), Root: a},
		{Kind: CloseWrite, Path: filepath.Join(a, "x"), Root: a},
		{Kind: Delete, Path: filepath.Join(a, "x"), Root: a},
		{Kind: Delete, Path: a, Root: a, Dir: true, Detail: map[string]string{"root": "deleted"}},
	}
	if diff := cmp.Diff(want, got, fanIgnoreTimeAndPrincipal); diff != "" {
		t.Fatalf("root deleted: events (-want +got):\n%s", diff)
	}
	// Made again at the same path, it is watched again.
	wk.do(t, "mkdir", a)
	wk.do(t, "create", filepath.Join(a, "y"))
	got = w.mark(t, wk, a)
	want = []Event{
		{Kind: Create, Path: a, Root: a, Dir: true},
		{Kind: Create, Path: filepath.Join(a, "y"), Root: a},
		{Kind: CloseWrite, Path: filepath.Join(a, "y"), Root: a},
	}
	if diff := cmp.Diff(want, got, fanIgnoreTimeAndPrincipal); diff != "" {
		t.Fatalf("root made again: events (-want +got):\n%s", diff)
	}
	// Moved away: reported, and what happens where it went is not.
	wk.do(t, "rename", b, b+".moved")
	wk.do(t, "create", filepath.Join(b+".moved", "z"))
	got = w.mark(t, wk, a)
	want = []Event{{Kind: Delete, Path: b, Root: b, Dir: true, Detail: map[string]string{"root": "moved", "rename": "unpaired", "moved_to": b + ".moved"}}}
	if diff := cmp.Diff(want, got, fanIgnoreTimeAndPrincipal); diff != "" {
		t.Fatalf("root moved: events (-want +got):\n%s", diff)
	}
	// With no root left, Run goes on (the cleanup checks that it still
	// stops on cancel), and a root swapped back in is watched.
	wk.do(t, "removeall", a)
	wk.do(t, "rename", b+".moved", b)
	wk.do(t, "create", filepath.Join(b, "back"))
	got = nil
	for _, e := range w.mark(t, wk, b) {
		if !strictlyUnder(e.Path, a) { // a's contents, deleted in directory order
			got = append(got, e)
		}
	}
	want = []Event{
		{Kind: Delete, Path: a, Root: a, Dir: true, Detail: map[string]string{"root": "deleted"}},
		{Kind: Create, Path: b, Root: b, Dir: true, OldPath: b + ".moved", Detail: map[string]string{"rename": "unpaired"}},
		{Kind: Create, Path: filepath.Join(b, "back"), Root: b},
		{Kind: CloseWrite, Path: filepath.Join(b, "back"), Root: b},
	}
	if diff := cmp.Diff(want, got, fanIgnoreTimeAndPrincipal); diff != "" {
		t.Fatalf("root moved back: events (-want +got):\n%s", diff)
	}
}

func TestFanotifyReportsRootsMovedWithAnAncestor(t *testing.T) {
	requireRoot(t)
	parent := publicDir(t, 0o755)
	root := filepath.Join(parent, "p", "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	w := watch(t, root)
	wk := selfWorker(t)
	wk.do(t, "rename", filepath.Join(parent, "p"), filepath.Join(parent, "q"))
	wk.do(t, "create", filepath.Join(parent, "q", "root", "unseen"))
	wk.do(t, "rename", filepath.Join(parent, "q"), filepath.Join(parent, "p"))
	got := w.mark(t, wk, root)
	want := []Event{
		{Kind: Delete, Path: root, Root: root, Dir: true, Detail: map[string]string{"root": "moved", "moved_to": filepath.Join(parent, "q", "root")}},
		{Kind: Create, Path: root, Root: root, Dir: true, OldPath: filepath.Join(parent, "q", "root"), Detail: map[string]string{"rename": "unpaired"}},
	}
	if diff := cmp.Diff(want, got, fanIgnoreTimeAndPrincipal); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
}

func TestFanotifyReportsPathsUnderTheRootAsGiven(t *testing.T) {
	requireRoot(t)
	parent := publicDir(t, 0o755)
	real := filepath.Join(parent, "real")
	link := filepath.Join(parent, "link")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	w := watch(t, link)
	wk := selfWorker(t)
	wk.do(t, "create", filepath.Join(real, "f"))
	got := w.mark(t, wk, link)
	want := []Event{
		{Kind: Create, Path: filepath.Join(link, "f"), Root: link},
		{Kind: CloseWrite, Path: filepath.Join(link, "f"), Root: link},
	}
	if diff := cmp.Diff(want, got, fanIgnoreTimeAndPrincipal); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
}

func TestFanotifyRunStopsOnCancel(t *testing.T) {
	requireRoot(t)
	root := publicDir(t, 0o755)
	f, err := NewFanotify([]string{root}, FanotifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	events := make(chan Event)
	go func() { done <- f.Run(ctx, events) }()
	exec.Command("touch", filepath.Join(root, "a"), filepath.Join(root, "b")).Run()
	// Take the first event and no more: Run has more to send, and is
	// blocked sending them when it is cancelled.
	select {
	case <-events:
	case err := <-done:
		t.Fatalf("Run returned %v before sending anything", err)
	case <-time.After(testkit.Long):
		t.Fatal("no event from the touch")
	}
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run returned %v, want context.Canceled", err)
		}
		t.Logf("stopped in %v", time.Since(start))
	case <-time.After(testkit.Long):
		t.Fatalf("Run did not stop within %v of cancel", testkit.Long)
	}
	if link, _ := os.Readlink("/proc/self/fd/" + itoa(f.fd)); link == "anon_inode:[fanotify]" {
		t.Error("the fanotify descriptor is still open after Run returned")
	}
}

func TestNewFanotifyIsUnavailableWithoutPrivilege(t *testing.T) {
	requireRoot(t)
	root := publicDir(t, 0o755)
	wk := nobodyWorker(t)
	if err := wk.try("probe", root); err != nil {
		t.Fatalf("NewFanotify as nobody: %v, want an error wrapping ErrFanotifyUnavailable", err)
	}
}

func TestNewFanotifyRefusesBadRoots(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, roots := range [][]string{nil, {"relative"}, {filepath.Join(dir, "missing")}, {file}} {
		f, err := NewFanotify(roots, FanotifyOptions{})
		if err == nil {
			f.Close()
			t.Errorf("NewFanotify(%q) succeeded", roots)
		} else if errors.Is(err, ErrFanotifyUnavailable) {
			t.Errorf("NewFanotify(%q): %v; a bad root is not a reason to fall back", roots, err)
		}
	}
}

func FuzzParseEvent(f *testing.F) {
	ev := make([]byte, 24+4+16+8+4+12)
	ev[0], ev[4], ev[6] = byte(len(ev)), unix.FANOTIFY_METADATA_VERSION, 24
	ev[24], ev[26] = unix.FAN_EVENT_INFO_TYPE_DFID_NAME, 4+16+8+4
	ev[24+4+8] = 8
	f.Add(ev)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		for len(b) > 0 {
			r, n, err := parseEvent(b)
			if err != nil {
				return
			}
			if n < metadataLen || n > len(b) {
				t.Fatalf("length %d of %d bytes", n, len(b))
			}
			for _, s := range [][]byte{r.dir.key, r.dir.name, r.newDir.key, r.obj} {
				if len(s) > n {
					t.Fatal("a record longer than its event")
				}
			}
			b = b[n:]
		}
	})
}

// BenchmarkFanotifyCreates has a worker create b.N files in a watched
// directory and reports the create events received per second, on the
// disk (/tmp) and on tmpfs (/dev/shm), where creating files is cheap
// enough that the source, not the filesystem, sets the pace.
func BenchmarkFanotifyCreates(b *testing.B) {
	requireRoot(b)
	for _, base := range []struct{ name, dir string }{{"disk", "/tmp"}, {"tmpfs", "/dev/shm"}} {
		b.Run(base.name, func(b *testing.B) {
			parent, err := os.MkdirTemp(base.dir, "custody-fanotify-bench-")
			if err != nil {
				b.Skip(err)
			}
			b.Cleanup(func() { os.RemoveAll(parent) })
			benchmarkCreates(b, parent)
		})
	}
}

func benchmarkCreates(b *testing.B, root string) {
	w := watch(b, root)
	wk := selfWorker(b)
	dir := filepath.Join(root, "d")
	wk.do(b, "mkdir", dir)
	w.mark(b, wk, root)
	b.ResetTimer()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- wk.try("many", dir, itoa(b.N)) }()
	creates, overflows := 0, 0
	for creates < b.N && overflows == 0 {
		switch e := <-w.events; e.Kind {
		case Create:
			creates++
		case Overflow:
			overflows++
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	if overflows > 0 {
		b.Errorf("the queue overflowed after %d of %d creates", creates, b.N)
	}
	b.ReportMetric(float64(creates)/elapsed.Seconds(), "events/s")
}

func itoa(n int) string { return strconv.Itoa(n) }
