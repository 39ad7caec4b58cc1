package snapshot

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/custodyhq/custody/internal/testkit"
)

// makeRichDir fills dir with one of everything a restore must reproduce.
// It returns the path, relative to dir, of a sparse file.
func makeRichDir(t *testing.T, dir string) string {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	p := func(rel string) string { return filepath.Join(dir, rel) }
	write := func(rel string, data []byte, mode os.FileMode) {
		t.Helper()
		must(os.MkdirAll(filepath.Dir(p(rel)), 0o755))
		must(os.WriteFile(p(rel), data, mode))
		must(os.Chmod(p(rel), mode)) // past the umask
	}
	write("data/big.bin", testkit.RandomBytes(1, 6<<20), 0o644) // several chunks
	write("data/small.txt", []byte("hello\n"), 0o640)
	write("data/empty", nil, 0o600)
	write("bin/tool", []byte("#!/bin/sh\n"), 0o755)
	must(os.Chmod(p("bin/tool"), 0o755|os.ModeSetuid))
	write("names/caf\xe9", []byte("latin-1"), 0o644)
	write("names/new\nline", []byte("newline"), 0o644)
	write("names/\xff\xfe", []byte("not utf-8"), 0o644)
	must(os.MkdirAll(p("empty-dir"), 0o700))

	// Hard links, one of them in another directory.
	write("hard/a", []byte("one inode"), 0o644)
	must(os.MkdirAll(p("hard2"), 0o755))
	must(os.Link(p("hard/a"), p("hard/b")))
	must(os.Link(p("hard/a"), p("hard2/c")))

	must(os.MkdirAll(p("links"), 0o755))
	must(os.Symlink("../data/small.txt", p("links/rel")))
	must(os.Symlink("/nonexistent/absolute", p("links/abs")))
	must(os.Symlink("caf\xe9\xff", p("links/raw")))

	// A sparse file: data at both ends of 24 MiB of holes.
	sparse := "data/sparse.img"
	f, err := os.Create(p(sparse))
	must(err)
	_, err = f.WriteAt([]byte("head"), 0)
	must(err)
	_, err = f.WriteAt([]byte("middle"), 12<<20)
	must(err)
	must(f.Truncate(24 << 20))
	must(f.Close())

	if xattrsSupported(t, dir) {
		must(unix.Setxattr(p("data/small.txt"), "user.checksum", []byte("abc"), 0))
		must(unix.Setxattr(p("data/small.txt"), "user.empty", nil, 0))
		must(unix.Setxattr(p("data"), "user.dataset", []byte("raw"), 0))
	}
	if os.Geteuid() == 0 {
		must(os.Lchown(p("data/small.txt"), 65534, 65533))
		must(os.Lchown(p("links/rel"), 65534, 65534))
		must(os.Lchown(p("hard2"), 65534, 65534))
	}

	// A chain deeper than PATH_MAX, made a name at a time.
	root, err := os.OpenRoot(dir)
	must(err)
	deep := strings.Repeat("d", 200)
	for range 25 {
		must(root.Mkdir(deep, 0o755))
		next, err := root.OpenRoot(deep)
		must(err)
		must(root.Close())
		root = next
	}
	must(root.WriteFile("bottom", []byte("deep"), 0o644))
	must(root.Close())

	// Times last: creating entries changes their directory's mtime.
	tm := time.Unix(1_600_000_000, 123_456_789)
	must(filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		if strings.HasPrefix(filepath.Base(path), "ddd") {
			return filepath.SkipDir // too deep for paths; any mtime will do
		}
		tm = tm.Add(time.Second + 7)
		return unix.UtimesNanoAt(unix.AT_FDCWD, path, []unix.Timespec{unix.NsecToTimespec(tm.UnixNano()), unix.NsecToTimespec(tm.UnixNano())}, unix.AT_SYMLINK_NOFOLLOW)
	}))
	must(os.Chmod(p("bin"), 0o555)) // read-only, restored anyway
	return sparse
}

func TestArchiveThenRestoreReproducesTheDirectory(t *testing.T) {
	src := filepath.Join(tempDir(t), "src")
	sparse := makeRichDir(t, src)
	b := newMemBlobs()
	ctx := context.Background()
	ar, err := Archive(ctx, b, src, ArchiveOptions{})
	if err != nil {
		t.Fatalf("Archive: %v", err)
	}
	target := filepath.Join(tempDir(t), "restored")
	res, err := Restore(ctx, b, ar.Tree, "", target, RestoreOptions{Workers: 3})
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	want, got := scanDir(t, src), scanDir(t, target)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("restored directory differs from the archived one (-src +restored):\n%s", diff)
	}
	if res.Hardlinks != 2 || res.Symlinks != 3 {
		t.Errorf("result %+v: want 2 hard links, 3 symlinks", *res)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(target, sparse), &st); err != nil {
		t.Fatal(err)
	}
	if used := st.Blocks * 512; used > st.Size/2 {
		t.Errorf("%s: %d of %d bytes allocated: not sparse", sparse, used, st.Size)
	}

	// Restoring one directory of it gives that directory's part of the scan.
	sub := filepath.Join(tempDir(t), "sub")
	if _, err := Restore(ctx, b, ar.Tree, "data", sub, RestoreOptions{}); err != nil {
		t.Fatalf("Restore data: %v", err)
	}
	wantSub := map[string]entState{}
	for p, s := range want {
		if rest, ok := strings.CutPrefix(p, "data/"); ok {
			wantSub[rest] = s
		}
	}
	if diff := cmp.Diff(wantSub, scanDir(t, sub)); diff != "" {
		t.Errorf("restored sub directory differs (-src +restored):\n%s", diff)
	}
}
