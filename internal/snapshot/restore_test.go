package snapshot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/custodyhq/custody/internal/vault"
)

// richVersion has one of everything Restore must reproduce that any user
// can create.
func richVersion() []ent {
	var many []string
	for i := range 40 {
		many = append(many, strings.Repeat(string(rune('a'+i%26)), 1000+i))
	}
	return []ent{
		{path: "docs/readme.md", chunks: []string{"hello\n"}, mtime: 1_600_000_000_000_000_001},
		{path: "docs/big.bin", chunks: many}, // more chunks than the read-ahead window
		{path: "docs/private", chunks: []string{"secret"}, mode: 0o600},
		{path: "bin/tool", chunks: []string{"#!/bin/sh\n"}, mode: 0o4755},
		{path: "bin", dir: true, mode: 0o555, mtime: 1_500_000_000_999_999_999}, // read-only, filled anyway
		{path: "empty-file"},
		{path: "empty-dir", dir: true, mode: 0o700, mtime: 1_400_000_000_000_000_007},
		{path: "links/rel", target: "../docs/readme.md", mtime: 1_300_000_000_000_000_003},
		{path: "links/abs", target: "/nonexistent/anywhere"},
		{path: "links/raw", target: "caf\xe9\xff"},
		{path: "names/caf\xe9", chunks: []string{"latin-1 name"}},
		{path: "names/new\nline", chunks: []string{"newline name"}},
		{path: "names/\xff\xfe", chunks: []string{"not utf-8"}},
		{path: "hard/one", chunks: []string{"shared inode"}, ino: 7, links: 3},
		{path: "hard/two", chunks: []string{"shared inode"}, ino: 7, links: 3},
		{path: "other/three", chunks: []string{"shared inode"}, ino: 7, links: 3},
		{path: "lonely-link", chunks: []string{"its twin is not in the version"}, ino: 8, links: 2},
	}
}

func mustRestore(t *testing.T, b Blobs, tree vault.ID, sub, target string, opts RestoreOptions) *RestoreResult {
	t.Helper()
	res, err := Restore(context.Background(), b, tree, sub, target, opts)
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	return res
}

func checkRestored(t *testing.T, b Blobs, tree vault.ID, sub, target string) {
	t.Helper()
	if diff := cmp.Diff(wantState(t, b, tree, sub), scanDir(t, target)); diff != "" {
		t.Errorf("restored tree differs from the version (-want +got):\n%s", diff)
	}
}

func TestRestoreReproducesContentModesTimesLinksAndNames(t *testing.T) {
	b := newMemBlobs()
	tree := buildTree(t, b, richVersion()...)
	target := filepath.Join(tempDir(t), "new", "target") // created
	var mu sync.Mutex
	var last RestoreProgress
	res := mustRestore(t, b, tree, "", target, RestoreOptions{Workers: 3, Progress: func(p RestoreProgress) {
		mu.Lock()
		last = p
		mu.Unlock()
	}})
	checkRestored(t, b, tree, "", target)
	want := RestoreResult{Files: 10, Dirs: 7, Symlinks: 3, Hardlinks: 2, Bytes: res.Bytes}
	if *res != want {
		t.Errorf("result %+v, want %+v", *res, want)
	}
	if last.Files != res.Files || last.Bytes != res.Bytes || res.Bytes == 0 {
		t.Errorf("last progress %+v, result %+v", last, *res)
	}
	if _, err := os.Lstat(filepath.Join(target, markerName)); !os.IsNotExist(err) {
		t.Errorf("resume marker left behind: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(target, "docs")); len(ents) != 3 {
		t.Errorf("docs holds %d entries, want 3 (no temporary files)", len(ents))
	}
}

func TestRestoreOwnersAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root can restore owners")
	}
	b := newMemBlobs()
	nobody := u32(65534)
	tree := buildTree(t, b,
		ent{path: "d", dir: true, uid: nobody, gid: nobody},
		ent{path: "d/f", chunks: []string{"x"}, uid: nobody, gid: u32(65533), mode: 0o6755},
		ent{path: "d/l", target: "f", uid: nobody, gid: nobody},
	)
	target := tempDir(t)
	mustRestore(t, b, tree, "", target, RestoreOptions{})
	checkRestored(t, b, tree, "", target) // checks owners and that chown kept setuid/setgid
}

func xattrsSupported(t *testing.T, dir string) bool {
	p := filepath.Join(dir, "probe")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(p)
	return unix.Setxattr(p, "user.probe", []byte("1"), 0) == nil
}

func TestRestoreXattrs(t *testing.T) {
	target := tempDir(t)
	if !xattrsSupported(t, target) {
		t.Skip("filesystem has no user xattrs")
	}
	b := newMemBlobs()
	xs := []Xattr{{Name: "user.checksum", Value: []byte("abc")}, {Name: "user.empty", Value: []byte{}}}
	tree := buildTree(t, b,
		ent{path: "f", chunks: []string{"x"}, mode: 0o444, xattrs: xs}, // read-only: xattrs go first
		ent{path: "d", dir: true, mode: 0o555, xattrs: xs[:1]},
		ent{path: "d/g", chunks: []string{"y"}},
		ent{path: "l", target: "f", xattrs: xs[:1]}, // Linux refuses user xattrs on symlinks
	)
	var warned []string
	mustRestore(t, b, tree, "", target, RestoreOptions{Warn: func(p string, err error) {
		warned = append(warned, p)
	}})
	want := wantState(t, b, tree, "")
	got := scanDir(t, target)
	if len(got["l"].Xattrs) == 0 {
		l := want["l"]
		l.Xattrs = nil
		want["l"] = l
		if len(warned) != 1 || warned[0] != "l" {
			t.Errorf("warned about %q, want the symlink l", warned)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("restored tree differs (-want +got):\n%s", diff)
	}
}

func TestRestoreKeepsSparseFilesSparse(t *testing.T) {
	b := newMemBlobs()
	zero := strings.Repeat("\x00", 1<<20)
	chunks := []string{"start"}
	for range 8 {
		chunks = append(chunks, zero)
	}
	chunks = append(chunks, "middle")
	for range 7 {
		chunks = append(chunks, zero) // a hole at the end too
	}
	tree := buildTree(t, b, ent{path: "disk.img", chunks: chunks}, ent{path: "zeros", chunks: []string{zero}})
	target := tempDir(t)
	mustRestore(t, b, tree, "", target, RestoreOptions{})
	checkRestored(t, b, tree, "", target)
	for _, name := range []string{"disk.img", "zeros"} {
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(target, name), &st); err != nil {
			t.Fatal(err)
		}
		if used := st.Blocks * 512; used > st.Size/8 {
			t.Errorf("%s: %d bytes allocated for %d: not sparse", name, used, st.Size)
		}
	}
}

func TestRestoreTreeDeeperThanPathMax(t *testing.T) {
	b := newMemBlobs()
	name := strings.Repeat("d", 200)
	var p []string
	for range 30 { // 30 × 201 bytes > PATH_MAX (4096)
		p = append(p, name)
	}
	deep := strings.Join(p, "/")
	tree := buildTree(t, b,
		ent{path: deep + "/file", chunks: []string{"deep"}, ino: 3, links: 2},
		ent{path: deep + "/link", target: "file"},
		ent{path: p[0] + "/twin", chunks: []string{"deep"}, ino: 3, links: 2},
	)
	target := tempDir(t)
	mustRestore(t, b, tree, "", target, RestoreOptions{})
	checkRestored(t, b, tree, "", target)
}

func TestRestoreRefusesNonEmptyTarget(t *testing.T) {
	b := newMemBlobs()
	tree := buildTree(t, b, ent{path: "f", chunks: []string{"new"}})
	target := tempDir(t)
	if err := os.WriteFile(filepath.Join(target, "mine"), []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Restore(context.Background(), b, tree, "", target, RestoreOptions{})
	if !errors.Is(err, ErrTargetNotEmpty) {
		t.Fatalf("Restore into a non-empty directory: %v, want ErrTargetNotEmpty", err)
	}
	if ents, _ := os.ReadDir(target); len(ents) != 1 {
		t.Errorf("the refused restore changed the target: %v", ents)
	}
	// A marker of another version is no licence either.
	other := buildTree(t, b, ent{path: "g", chunks: []string{"other"}})
	empty := tempDir(t)
	writeMarker(t, empty, other, "")
	if _, err := Restore(context.Background(), b, tree, "", empty, RestoreOptions{}); !errors.Is(err, ErrTargetNotEmpty) {
		t.Errorf("Restore over another version's marker: %v, want ErrTargetNotEmpty", err)
	}
}

func writeMarker(t *testing.T, dir string, tree vault.ID, sub string) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if _, err := prepareTarget(root, newMarker(tree, sub), false); err != nil {
		t.Fatal(err)
	}
}

func TestRestoreOverwriteReplacesWhatDiffersAndKeepsTheRest(t *testing.T) {
	b := newMemBlobs()
	tree := buildTree(t, b,
		ent{path: "same", chunks: []string{"unchanged"}},
		ent{path: "changed", chunks: []string{"new content"}},
		ent{path: "was-dir", chunks: []string{"now a file"}},
		ent{path: "was-file/inner", chunks: []string{"now a dir"}},
		ent{path: "was-link", chunks: []string{"now a file"}},
		ent{path: "link", target: "same"},
		ent{path: "ro", dir: true, mode: 0o500},
		ent{path: "ro/f", chunks: []string{"in a read-only dir"}},
	)
	target := tempDir(t)
	mustRestore(t, b, tree, "", target, RestoreOptions{})
	// Now disturb it.
	w := func(p, data string) {
		if err := os.WriteFile(filepath.Join(target, p), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	w("changed", "old content")
	must(os.Remove(filepath.Join(target, "was-dir")))
	must(os.MkdirAll(filepath.Join(target, "was-dir", "sub"), 0o755))
	w("was-dir/sub/x", "x")
	must(os.RemoveAll(filepath.Join(target, "was-file")))
	w("was-file", "a file")
	must(os.Remove(filepath.Join(target, "was-link")))
	must(os.Symlink("same", filepath.Join(target, "was-link")))
	must(os.Remove(filepath.Join(target, "link")))
	w("link", "not a link")
	w("extra", "not in the version")

	res := mustRestore(t, b, tree, "", target, RestoreOptions{Overwrite: true})
	want := wantState(t, b, tree, "")
	got := scanDir(t, target)
	if _, ok := got["extra"]; !ok {
		t.Errorf("Overwrite removed a file that is not in the version")
	}
	delete(got, "extra")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("overwritten tree differs (-want +got):\n%s", diff)
	}
	// "same" and "ro/f" were already right.
	if res.Skipped != 2 || res.Files != 6 {
		t.Errorf("result %+v: want 6 files, 2 of them skipped", *res)
	}
}

// cancelAfter cancels a restore after n blob loads.
func cancelAfter(b Blobs, n int64, cancel context.CancelFunc) *countingBlobs {
	return &countingBlobs{Blobs: b, onLoad: func(i int64) error {
		if i > n {
			cancel()
			return context.Canceled
		}
		return nil
	}}
}

func TestRestoreResumesAfterInterruption(t *testing.T) {
	b := newMemBlobs()
	var ents []ent
	for i := range 60 {
		ents = append(ents, ent{path: "d" + string(rune('a'+i%6)) + "/f" + string(rune('A'+i)), chunks: []string{strings.Repeat("z", i+1), "tail"}})
	}
	ents = append(ents, ent{path: "da", dir: true, mode: 0o555})
	tree := buildTree(t, b, ents...)
	target := tempDir(t)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := Restore(ctx, cancelAfter(b, 40, cancel), tree, "", target, RestoreOptions{Workers: 2})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted restore: %v, want context.Canceled", err)
	}
	if _, err := os.Stat(filepath.Join(target, markerName)); err != nil {
		t.Fatalf("no resume marker after the interruption: %v", err)
	}
	// Another path of the same version does not resume it.
	if _, err := Restore(context.Background(), b, tree, "da", target, RestoreOptions{}); !errors.Is(err, ErrTargetNotEmpty) {
		t.Errorf("restore of another path over the interrupted one: %v, want ErrTargetNotEmpty", err)
	}
	res, err := Restore(context.Background(), b, tree, "", target, RestoreOptions{})
	if err != nil {
		t.Fatalf("resumed restore: %v", err)
	}
	checkRestored(t, b, tree, "", target)
	if _, err := os.Lstat(filepath.Join(target, markerName)); !os.IsNotExist(err) {
		t.Errorf("resume marker left after the resumed restore: %v", err)
	}
	if res.Skipped == 0 || res.Files != 60 {
		t.Errorf("resumed result %+v: want 60 files, some skipped", *res)
	}
}

func TestRestoreStopsPromptlyWhenCancelled(t *testing.T) {
	b := newMemBlobs()
	var chunks []string
	for i := range 200 {
		chunks = append(chunks, strings.Repeat(string(rune('a'+i%26)), 1000))
	}
	tree := buildTree(t, b, ent{path: "big", chunks: chunks}, ent{path: "d/small", chunks: []string{"s"}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cb := cancelAfter(b, 10, cancel)
	_, err := Restore(ctx, cb, tree, "", tempDir(t), RestoreOptions{Workers: 4})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Restore: %v, want context.Canceled", err)
	}
	if n := cb.loads.Load(); n > 30 {
		t.Errorf("%d loads after cancelling at 10", n)
	}
}

func TestRestoreSubPathDirectory(t *testing.T) {
	b := newMemBlobs()
	tree := buildTree(t, b, richVersion()...)
	target := tempDir(t)
	mustRestore(t, b, tree, "docs", target, RestoreOptions{})
	checkRestored(t, b, tree, "docs", target)
	// The directory's own metadata goes onto the target.
	var st unix.Stat_t
	if err := unix.Stat(target, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mtim.Nano() != testMTime || st.Mode&0o7777 != 0o755 {
		t.Errorf("target mtime %d mode %o, want the docs directory's", st.Mtim.Nano(), st.Mode&0o7777)
	}
}

func TestRestoreSubPathFile(t *testing.T) {
	b := newMemBlobs()
	tree := buildTree(t, b, richVersion()...)
	for _, sub := range []string{"docs/private", "links/rel", "names/new\nline", "hard/two"} {
		target := tempDir(t)
		mustRestore(t, b, tree, sub, target, RestoreOptions{})
		checkRestored(t, b, tree, sub, target)
	}
}

func TestRestoreOfAMissingPathFails(t *testing.T) {
	b := newMemBlobs()
	tree := buildTree(t, b, ent{path: "f", chunks: []string{"x"}})
	target := filepath.Join(tempDir(t), "t")
	if _, err := Restore(context.Background(), b, tree, "nope", target, RestoreOptions{}); !errors.Is(err, ErrPathNotFound) {
		t.Errorf("Restore of a missing path: %v", err)
	}
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		t.Errorf("a failed lookup still created the target")
	}
}

func TestRestoreNamesTheFileWhoseBlobFailsToLoad(t *testing.T) {
	b := newMemBlobs()
	tree := buildTree(t, b, ent{path: "ok", chunks: []string{"fine"}}, ent{path: "sub/broken", chunks: []string{"lost", "x"}})
	delete(b.blobs, b.BlobID([]byte("lost")))
	_, err := Restore(context.Background(), b, tree, "", tempDir(t), RestoreOptions{})
	if err == nil || !strings.Contains(err.Error(), `"sub/broken"`) {
		t.Fatalf("Restore with a missing blob: %v, want an error naming sub/broken", err)
	}
}

func TestRestoreRejectsContentOfTheWrongSize(t *testing.T) {
	b := newMemBlobs()
	id := saveBlob(t, b, vault.DataBlob, []byte("four"))
	n := Node{Name: "f", Type: TypeFile, Mode: 0o644, Size: 5, Content: []vault.ID{id}}
	enc, err := EncodeTree(&Tree{Nodes: []Node{n}})
	if err != nil {
		t.Fatal(err)
	}
	tree := saveBlob(t, b, vault.TreeBlob, enc)
	target := tempDir(t)
	_, err = Restore(context.Background(), b, tree, "", target, RestoreOptions{})
	if err == nil || !strings.Contains(err.Error(), `"f"`) {
		t.Fatalf("Restore of a file whose chunks are short: %v", err)
	}
	if ents, _ := os.ReadDir(target); len(ents) != 1 || ents[0].Name() != markerName {
		t.Errorf("target holds %v, want only the resume marker", ents)
	}
}
