package main_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/custodyhq/custody/internal/testkit"
)

// makeRichDataset builds a dataset with every kind of entry and metadata a
// restore must reproduce, and returns whether user xattrs were set.
func makeRichDataset(t *testing.T, dir string) (xattrs bool) {
	t.Helper()
	rng := newRand(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	p := func(rel string) string { return filepath.Join(dir, rel) }

	testkit.WriteFile(t, p("random.bin"), testkit.RandomBytes(rng.Uint64(), 3<<20+12345))
	testkit.WriteFile(t, p("notes.txt"), textBytes(rng, 200<<10))
	testkit.WriteFile(t, p("empty"), nil)
	testkit.WriteFile(t, p("sub/file.txt"), textBytes(rng, 5000))
	testkit.WriteFile(t, p("sub/dir/inner.csv"), textBytes(rng, 70<<10))
	testkit.WriteFile(t, p("sub/dir/more/deeper.bin"), testkit.RandomBytes(rng.Uint64(), 300<<10))
	testkit.WriteFile(t, p("bad-\xff\xfe-name.bin"), testkit.RandomBytes(rng.Uint64(), 1000))
	testkit.WriteFile(t, p("line\nbreak.txt"), []byte("a name with a newline\n"))
	testkit.WriteFile(t, p("secret.key"), testkit.RandomBytes(rng.Uint64(), 64))
	must(os.Chmod(p("secret.key"), 0o600))
	testkit.WriteFile(t, p("readonly.txt"), []byte("read only\n"))
	must(os.Chmod(p("readonly.txt"), 0o444))

	// A sparse file: 64 MiB with a few KiB of data.
	f, err := os.Create(p("sparse.img"))
	must(err)
	_, err = f.WriteAt(testkit.RandomBytes(rng.Uint64(), 4096), 0)
	must(err)
	_, err = f.WriteAt(testkit.RandomBytes(rng.Uint64(), 4096), 40<<20)
	must(err)
	must(f.Truncate(64 << 20))
	must(f.Close())

	must(os.Symlink("notes.txt", p("link-to-notes")))
	must(os.Symlink("does/not/exist", p("dangling")))
	must(os.Symlink("../random.bin", p("sub/up-link")))
	must(os.Symlink("target-\xff-not-utf8", p("odd-link")))
	must(os.Symlink(strings.Repeat("long/", 800), p("long-link")))

	// A wide directory.
	for i := range 2000 {
		testkit.WriteFile(t, p(fmt.Sprintf("many/item-%04d.json", i)), fmt.Appendf(nil, `{"id":%d}`, i))
	}

	// Three names for one file, in three directories.
	testkit.WriteFile(t, p("hard-a"), textBytes(rng, 9000))
	must(os.Link(p("hard-a"), p("sub/hard-b")))
	must(os.Link(p("hard-a"), p("sub/dir/hard-c")))
	// Two names in one directory.
	testkit.WriteFile(t, p("twin-1"), testkit.RandomBytes(rng.Uint64(), 2000))
	must(os.Link(p("twin-1"), p("twin-2")))

	testkit.WriteFile(t, p("shared/team.txt"), []byte("setgid directory\n"))
	testkit.WriteFile(t, p("sticky/x"), []byte("sticky directory\n"))
	testkit.WriteFile(t, p("tool"), []byte("#!/bin/sh\necho setuid\n"))
	testkit.WriteFile(t, p("locked/inside.txt"), []byte("in a read-only directory\n"))

	deep := makeDeep(t, dir, 22, 200)
	if len(deep) <= 4096 {
		t.Fatalf("deep path is only %d bytes", len(deep))
	}

	if isRoot() {
		must(os.Chown(p("sub/file.txt"), 65534, 65534))
		must(os.Chown(p("shared"), 0, 65534))
		must(os.Lchown(p("link-to-notes"), 65534, 65534))
		must(os.Chown(p("tool"), 65534, 0))
		must(os.Chown(p("sub/dir"), 65534, 65534))
	}
	// chmod after chown: chown clears setuid and setgid.
	must(os.Chmod(p("shared"), 0o2775))
	must(os.Chmod(p("sticky"), 0o1777))
	must(os.Chmod(p("tool"), 0o4755))
	must(os.Chmod(p("sub/dir/more"), 0o700))

	err = unix.Setxattr(p("notes.txt"), "user.origin", []byte("web crawl 2024-05"), 0)
	switch {
	case errors.Is(err, unix.ENOTSUP):
		t.Log("user xattrs not supported here: that part is not tested")
	case err != nil:
		t.Fatal(err)
	default:
		xattrs = true
		must(unix.Setxattr(p("notes.txt"), "user.license", []byte("CC-BY-4.0"), 0))
		must(unix.Setxattr(p("sub/dir"), "user.label", []byte{0, 1, 2, 0xff}, 0))
		must(unix.Setxattr(p("empty"), "user.empty-value", nil, 0))
		must(unix.Setxattr(p("random.bin"), "user.big", testkit.RandomBytes(rng.Uint64(), 2000), 0))
	}
	if isRoot() {
		// Only root can read these back, so only root can snapshot them.
		testkit.WriteFile(t, p("sealed/inside.txt"), []byte("in a mode-0 directory\n"))
		testkit.WriteFile(t, p("no-permissions"), []byte("mode 0\n"))
		must(os.Chmod(p("no-permissions"), 0))
		must(os.Chmod(p("sealed"), 0))
	}
	must(os.Chmod(p("locked"), 0o555))
	setTimes(t, dir, rng)
	// Times before 1970 and after 2038.
	for rel, sec := range map[string]int64{"notes.txt": -315_619_200, "empty": 4_102_444_800} {
		ts := unix.NsecToTimespec(sec*1e9 + 123_456_789)
		must(unix.UtimesNanoAt(unix.AT_FDCWD, p(rel), []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW))
	}
	return xattrs
}

func TestRoundTripPreservesContentMetadataAndLinks(t *testing.T) {
	t.Parallel()
	e := newVault(t)
	src := filepath.Join(t.TempDir(), "corpus")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	unlockOnCleanup(t, src)
	xattrs := makeRichDataset(t, src)
	want := scanTree(t, src)
	if xattrs && want["notes.txt"].xattrs == "" {
		t.Fatal("test setup: xattrs were set but not read back")
	}

	r := e.ok("--json", "snapshot", src)
	var raw map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &raw); err != nil {
		t.Fatalf("snapshot --json: %v\n%s", err, r)
	}
	for _, k := range []string{"version", "dataset", "files", "bytes", "new_bytes", "stored_bytes", "seconds"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("snapshot --json has no %q field:\n%s", k, r.stdout)
		}
	}
	var s snapshotJSON
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatal(err)
	}
	var files, bytes uint64
	for _, en := range want {
		if en.typ == "file" {
			files++
			bytes += uint64(en.size)
		}
	}
	if s.Dataset != "corpus" {
		t.Errorf("dataset %q, want the directory's base name \"corpus\"", s.Dataset)
	}
	if len(s.Version) != 64 || strings.Trim(s.Version, "0123456789abcdef") != "" {
		t.Errorf("version %q is not 64 hex characters", s.Version)
	}
	if s.Files != files || s.Bytes != bytes {
		t.Errorf("snapshot counted %d files of %d bytes, the source has %d files of %d bytes", s.Files, s.Bytes, files, bytes)
	}
	if s.NewBytes == 0 || s.NewBytes > s.Bytes {
		t.Errorf("new_bytes %d: want between 1 and bytes (%d)", s.NewBytes, s.Bytes)
	}
	if s.StoredBytes == 0 || s.StoredBytes >= s.Bytes {
		t.Errorf("stored_bytes %d: want > 0 and well below bytes (%d): 60 MiB of the sparse file are zeros", s.StoredBytes, s.Bytes)
	}
	if s.Seconds <= 0 {
		t.Errorf("seconds %v, want > 0", s.Seconds)
	}

	t.Run("WholeVersion", func(t *testing.T) {
		e := e.in(t)
		target := e.restore(s.Version)
		compareTrees(t, src, target)
		fi, err := os.Stat(filepath.Join(target, "sparse.img"))
		if err != nil {
			t.Fatal(err)
		}
		if alloc := fi.Sys().(*syscall.Stat_t).Blocks * 512; alloc > 16<<20 {
			t.Errorf("restored sparse file of 64 MiB (8 KiB of data) allocates %d bytes, want it sparse (<= 16 MiB)", alloc)
		}
	})
	t.Run("LsNamesEveryPathExactly", func(t *testing.T) {
		e := e.in(t)
		var entries []struct {
			Path    string `json:"path"`
			PathRaw []byte `json:"path_raw"` // base64 in JSON
		}
		e.okJSON(&entries, "ls", s.Version[:8])
		var got []string
		for _, en := range entries {
			p := en.Path
			if en.PathRaw != nil {
				p = string(en.PathRaw)
			}
			got = append(got, p)
		}
		slices.Sort(got)
		if want := sortedKeys(want); !slices.Equal(got, want) {
			t.Errorf("ls --json paths differ from the source's:\n got %q\nwant %q", got, want)
		}
	})
	t.Run("SubdirectoryByPrefix", func(t *testing.T) {
		e := e.in(t)
		target := e.restore(s.Version[:8] + ":sub/dir")
		compareTrees(t, filepath.Join(src, "sub/dir"), target)
	})
	t.Run("SingleFileByPrefix", func(t *testing.T) {
		e := e.in(t)
		target := e.restore(s.Version[:12] + ":sub/file.txt")
		compareEntries(t, map[string]*entry{"file.txt": want["sub/file.txt"]}, scanTree(t, target))
	})
	t.Run("FileWithNewlineInName", func(t *testing.T) {
		e := e.in(t)
		target := e.restore(s.Version[:8] + ":line\nbreak.txt")
		compareEntries(t, map[string]*entry{"line\nbreak.txt": want["line\nbreak.txt"]}, scanTree(t, target))
	})
}

func TestSnapshotSkipsSpecialFilesWithWarning(t *testing.T) {
	t.Parallel()
	e := newVault(t)
	src := filepath.Join(t.TempDir(), "specials")
	testkit.WriteFile(t, filepath.Join(src, "regular.txt"), []byte("kept\n"))
	testkit.WriteFile(t, filepath.Join(src, "dir/also-kept.txt"), []byte("kept too\n"))
	if err := unix.Mkfifo(filepath.Join(src, "the-fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", filepath.Join(src, "dir/the-socket"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	specials := []string{"the-fifo", "dir/the-socket"}
	if isRoot() {
		if err := unix.Mknod(filepath.Join(src, "the-device"), unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatal(err)
		}
		specials = append(specials, "the-device")
	}

	r := e.ok("--json", "snapshot", src)
	for _, name := range specials {
		if !strings.Contains(r.stderr, name) {
			t.Errorf("stderr does not warn about %s:\n%s", name, r)
		}
	}
	var s snapshotJSON
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatal(err)
	}
	if s.Files != 2 || s.Skipped != len(specials) {
		t.Errorf("snapshot: %d files, %d skipped; want 2 files, %d skipped\n%s", s.Files, s.Skipped, len(specials), r)
	}
	target := e.restore(s.Version)
	got := scanTree(t, target)
	for _, name := range specials {
		if got[name] != nil {
			t.Errorf("restore created the special file %s", name)
		}
	}
	for _, name := range []string{"regular.txt", "dir/also-kept.txt"} {
		if got[name] == nil || got[name].typ != "file" {
			t.Errorf("restore lacks %s", name)
		}
	}
	e.checkClean()
}
