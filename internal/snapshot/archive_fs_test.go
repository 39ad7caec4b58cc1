package snapshot

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/custodyhq/custody/internal/testkit"
)

// warnings collects Warn calls.
type warnings struct {
	mu   sync.Mutex
	list []string // "path: error"
	errs []error
}

func (w *warnings) warn(path string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, path+": "+err.Error())
	w.errs = append(w.errs, err)
}

func TestArchiveKeepsNonUTF8AndNewlineNames(t *testing.T) {
	root := t.TempDir()
	names := []string{"\xff\xfe", "new\nline", "tab\there", "ünïcode", "dir\x80/inside\xc3"}
	for _, name := range names {
		testkit.WriteFile(t, filepath.Join(root, name), []byte(name))
	}
	if err := unix.Mkfifo(filepath.Join(root, "dir\x80", "fifo\xff"), 0o600); err != nil {
		t.Fatal(err)
	}
	var w warnings
	b := newMemBlobs()
	res := mustArchive(t, b, root, ArchiveOptions{Warn: w.warn})
	for _, name := range names {
		n := archNodeAt(t, b, res.Tree, name)
		if got := string(archContent(t, b, n)); got != name {
			t.Errorf("%q: content %q", name, got)
		}
	}
	if n := archNodeAt(t, b, res.Tree, "\xff\xfe"); n.NameRaw == nil || n.Name != "" {
		t.Errorf("non-UTF-8 name stored as Name %q NameRaw %q", n.Name, n.NameRaw)
	}
	want := []Skipped{{Path: "dir\x80/fifo\xff", Reason: "named pipe"}}
	if !reflect.DeepEqual(res.Skipped, want) || len(w.list) != 1 || !strings.HasPrefix(w.list[0], "dir\x80/fifo\xff: ") {
		t.Errorf("skipped %q warnings %q, want %q", res.Skipped, w.list, want)
	}

	// The parent's raw names must match the directory's in the merge.
	var opens atomic.Int64
	again, err := archiveWith(b, root, ArchiveOptions{Parent: res.Tree}, countOpens(&opens))
	if err != nil {
		t.Fatal(err)
	}
	if again.Tree != res.Tree || opens.Load() != 0 {
		t.Errorf("with parent: tree %s (want %s), %d files opened", again.Tree.Short(), res.Tree.Short(), opens.Load())
	}
}

// mkdirChain creates depth nested directories named name below dir through
// directory fds (the joined path would exceed PATH_MAX) and returns an fd
// of the deepest one.
func mkdirChain(t *testing.T, dir, name string, depth int) int {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for range depth {
		if err := unix.Mkdirat(fd, name, 0o755); err != nil {
			t.Fatal(err)
		}
		next, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd = next
	}
	return fd
}

func TestArchiveTreeDeeperThanPathMax(t *testing.T) {
	root := t.TempDir()
	name := strings.Repeat("d", 100)
	const depth = 50 // 5,050 bytes of path
	fd := mkdirChain(t, root, name, depth)
	leaf, err := unix.Openat(fd, "leaf", unix.O_CREAT|unix.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Write(leaf, []byte("deep")); err != nil {
		t.Fatal(err)
	}
	unix.Close(leaf)
	unix.Close(fd)

	b := newMemBlobs()
	first := mustArchive(t, b, root, ArchiveOptions{})
	res := mustArchive(t, b, root, ArchiveOptions{Parent: first.Tree})
	if res.Tree != first.Tree || res.Dirs != depth+1 || res.Files != 1 {
		t.Fatalf("dirs %d files %d, want %d and 1", res.Dirs, res.Files, depth+1)
	}
	path := strings.Repeat(name+"/", depth) + "leaf"
	if got := string(archContent(t, b, archNodeAt(t, b, res.Tree, path))); got != "deep" {
		t.Errorf("leaf content %q", got)
	}
}

func TestArchiveDirectoryWithHundredThousandEntries(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 100,000 files")
	}
	root := t.TempDir()
	const count = 100_000
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range count {
		f, err := unix.Openat(fd, fmt.Sprintf("file-%06d", i), unix.O_CREAT|unix.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		unix.Close(f)
	}
	unix.Close(fd)

	b := newSpyBlobs()
	start := time.Now()
	first := mustArchive(t, b, root, ArchiveOptions{})
	mid := time.Now()
	b.treeSaves.Store(0)
	again := mustArchive(t, b, root, ArchiveOptions{Parent: first.Tree})
	t.Logf("first archive %v, with parent %v", mid.Sub(start), time.Since(mid))

	// The second run decoded the first run's tree and matched every entry.
	if first.Files != count || again.Files != count {
		t.Fatalf("%d and %d files, want %d", first.Files, again.Files, count)
	}
	if again.Tree != first.Tree || b.treeSaves.Load() != 0 {
		t.Errorf("unchanged run gave tree %s (want %s) and saved %d trees", again.Tree.Short(), first.Tree.Short(), b.treeSaves.Load())
	}
}

func TestArchiveSkipsSpecialFilesWithWarning(t *testing.T) {
	root := t.TempDir()
	testkit.WriteFile(t, filepath.Join(root, "regular"), []byte("x"))
	if err := unix.Mkfifo(filepath.Join(root, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(root, "sock"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	want := []Skipped{{"fifo", "named pipe"}, {"sock", "socket"}}
	if err := unix.Mknod(filepath.Join(root, "null"), unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))); err == nil {
		want = []Skipped{{"fifo", "named pipe"}, {"null", "character device"}, {"sock", "socket"}}
	} else {
		t.Logf("no device node (%v); testing FIFO and socket only", err)
	}
	var w warnings
	b := newMemBlobs()
	res := mustArchive(t, b, root, ArchiveOptions{Warn: w.warn})
	if !reflect.DeepEqual(res.Skipped, want) {
		t.Errorf("skipped %v, want %v", res.Skipped, want)
	}
	if len(w.errs) != len(want) {
		t.Errorf("warnings %q, want %d", w.list, len(want))
	}
	for _, err := range w.errs {
		if !errors.Is(err, ErrSpecialFile) {
			t.Errorf("warning %v is not ErrSpecialFile", err)
		}
	}
	if tr := archLoadTree(t, b, res.Tree); len(tr.Nodes) != 1 || tr.Nodes[0].Name != "regular" {
		t.Errorf("tree has %d nodes, want only regular", len(tr.Nodes))
	}
}

// TestArchiveSkipsUnreadableEntries injects EACCES through the archiver's
// open function, because the tests run as root, which may open anything.
// The subtest with real permissions runs only for other users.
func TestArchiveSkipsUnreadableEntries(t *testing.T) {
	setup := func(t *testing.T) string {
		root := t.TempDir()
		testkit.WriteFile(t, filepath.Join(root, "fine"), []byte("ok"))
		testkit.WriteFile(t, filepath.Join(root, "secret"), []byte("no"))
		testkit.WriteFile(t, filepath.Join(root, "locked/inner"), []byte("no"))
		return root
	}
	check := func(t *testing.T, res *ArchiveResult, err error, w *warnings, b Blobs) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		want := []Skipped{{"locked", "permission denied"}, {"secret", "permission denied"}}
		if !reflect.DeepEqual(res.Skipped, want) {
			t.Errorf("skipped %v, want %v", res.Skipped, want)
		}
		if len(w.errs) != 2 || !errors.Is(w.errs[0], os.ErrPermission) {
			t.Errorf("warnings %q, want two permission errors", w.list)
		}
		if tr := archLoadTree(t, b, res.Tree); len(tr.Nodes) != 1 || tr.Nodes[0].Name != "fine" {
			t.Errorf("tree has %d nodes, want only fine", len(tr.Nodes))
		}
	}
	t.Run("injected EACCES", func(t *testing.T) {
		root := setup(t)
		var w warnings
		b := newMemBlobs()
		res, err := archiveWith(b, root, ArchiveOptions{Warn: w.warn}, func(a *archiver) {
			a.openat = func(dirfd int, name string, flags int, mode uint32) (int, error) {
				if name == "secret" || name == "locked" {
					return -1, unix.EACCES
				}
				return unix.Openat(dirfd, name, flags, mode)
			}
		})
		check(t, res, err, &w, b)
	})
	t.Run("real permissions", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root opens files regardless of their mode")
		}
		root := setup(t)
		for _, p := range []string{"secret", "locked"} {
			if err := os.Chmod(filepath.Join(root, p), 0); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Chmod(filepath.Join(root, p), 0o755) })
		}
		var w warnings
		b := newMemBlobs()
		res, err := Archive(t.Context(), b, root, ArchiveOptions{Warn: w.warn})
		check(t, res, err, &w, b)
	})
}

func TestArchiveDropsVanishedEntriesSilently(t *testing.T) {
	root := t.TempDir()
	testkit.WriteFile(t, filepath.Join(root, "stays"), []byte("x"))
	testkit.WriteFile(t, filepath.Join(root, "gone-file"), []byte("x"))
	testkit.WriteFile(t, filepath.Join(root, "gone-dir/inner"), []byte("x"))
	var w warnings
	b := newMemBlobs()
	res, err := archiveWith(b, root, ArchiveOptions{Warn: w.warn}, func(a *archiver) {
		a.openat = func(dirfd int, name string, flags int, mode uint32) (int, error) {
			if strings.HasPrefix(name, "gone-") {
				// Deleted between the directory listing and the open.
				if err := os.RemoveAll(filepath.Join(root, name)); err != nil {
					t.Error(err)
				}
			}
			return unix.Openat(dirfd, name, flags, mode)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Skipped) != 0 || len(w.list) != 0 {
		t.Errorf("skipped %v, warnings %q; vanished entries are not worth a warning", res.Skipped, w.list)
	}
	if tr := archLoadTree(t, b, res.Tree); len(tr.Nodes) != 1 || tr.Nodes[0].Name != "stays" {
		t.Errorf("tree has %d nodes, want only stays", len(tr.Nodes))
	}
}
