package snapshot

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/custodyhq/custody/internal/testkit"
	"github.com/custodyhq/custody/internal/vault"
)

// countOpens makes the archiver count the regular files it opens.
func countOpens(n *atomic.Int64) func(*archiver) {
	return func(a *archiver) {
		a.openat = func(dirfd int, name string, flags int, mode uint32) (int, error) {
			if flags&unix.O_DIRECTORY == 0 {
				n.Add(1)
			}
			return unix.Openat(dirfd, name, flags, mode)
		}
	}
}

func TestArchiveWithUnchangedParentOpensNoFiles(t *testing.T) {
	root := t.TempDir()
	for i := range 60 {
		testkit.WriteFile(t, filepath.Join(root, string(rune('a'+i%6)), string(rune('A'+i))), testkit.RandomBytes(uint64(i), 100+i*1000))
	}
	testkit.WriteFile(t, filepath.Join(root, "empty"), nil)
	if err := os.Symlink("a", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	b := newSpyBlobs()
	first := mustArchive(t, b, root, ArchiveOptions{})

	b.dataSaves.Store(0)
	b.treeSaves.Store(0)
	var opens atomic.Int64
	res, err := archiveWith(b, root, ArchiveOptions{Parent: first.Tree}, countOpens(&opens))
	if err != nil {
		t.Fatal(err)
	}
	if opens.Load() != 0 || b.dataSaves.Load() != 0 {
		t.Errorf("opened %d files and saved %d data blobs, want none", opens.Load(), b.dataSaves.Load())
	}
	if b.treeSaves.Load() != 0 {
		t.Errorf("saved %d trees; unchanged directories should reuse the parent's", b.treeSaves.Load())
	}
	if res.Tree != first.Tree || res.Files != first.Files || res.Bytes != first.Bytes || res.NewBytes != 0 || res.StoredBytes != 0 {
		t.Errorf("second run %+v, first %+v", res, first)
	}
}

// TestArchiveReadsFileWhenParentDiffers tampers one field of the parent's
// entry at a time: each of type, size, mtime, ctime and inode alone must
// make the file be read, and IgnoreInode must forgive the inode.
func TestArchiveReadsFileWhenParentDiffers(t *testing.T) {
	root := t.TempDir()
	testkit.WriteFile(t, filepath.Join(root, "f"), []byte("content"))
	testkit.WriteFile(t, filepath.Join(root, "g"), []byte("other"))
	b := newMemBlobs()
	first := mustArchive(t, b, root, ArchiveOptions{})

	tests := []struct {
		name        string
		tamper      func(*Node)
		ignoreInode bool
		wantOpens   int64
	}{
		{"identical", func(*Node) {}, false, 0},
		{"size differs", func(n *Node) { n.Size++ }, false, 1},
		{"mtime differs", func(n *Node) { n.ModTime++ }, false, 1},
		{"ctime differs", func(n *Node) { n.ChangeTime++ }, false, 1},
		{"inode differs", func(n *Node) { n.Inode++ }, false, 1},
		{"inode differs but is ignored", func(n *Node) { n.Inode++ }, true, 0},
		{"mtime differs with inode ignored", func(n *Node) { n.ModTime++ }, true, 1},
		{"parent was changed while read", func(n *Node) { n.ChangedWhileRead = true }, false, 1},
		{"parent was a symlink", func(n *Node) { n.Type, n.Content, n.LinkTarget = TypeSymlink, nil, "x" }, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := archLoadTree(t, b, first.Tree)
			tt.tamper(parent.Find([]byte("f")))
			enc, err := EncodeTree(parent)
			if err != nil {
				t.Fatal(err)
			}
			pid := b.BlobID(enc)
			if _, err := b.SaveBlob(context.Background(), vault.TreeBlob, pid, enc); err != nil {
				t.Fatal(err)
			}
			var opens atomic.Int64
			res, err := archiveWith(b, root, ArchiveOptions{Parent: pid, IgnoreInode: tt.ignoreInode}, countOpens(&opens))
			if err != nil {
				t.Fatal(err)
			}
			if opens.Load() != tt.wantOpens {
				t.Errorf("opened %d files, want %d", opens.Load(), tt.wantOpens)
			}
			if res.Tree != first.Tree {
				t.Errorf("tree %s, want the unchanged tree %s", res.Tree.Short(), first.Tree.Short())
			}
		})
	}
}

func TestArchiveDetectsModifiedFiles(t *testing.T) {
	root := t.TempDir()
	old := time.Unix(1600000000, 5)
	names := []string{"grown", "rewritten", "replaced", "untouched"}
	for _, name := range names {
		testkit.WriteFile(t, filepath.Join(root, name), []byte("original"))
		if err := os.Chtimes(filepath.Join(root, name), old, old); err != nil {
			t.Fatal(err)
		}
	}
	b := newMemBlobs()
	first := mustArchive(t, b, root, ArchiveOptions{})

	// grown: size changes. rewritten: same size, new mtime. replaced: a
	// new inode with the same size and mtime (ctime and inode give it away).
	if err := os.WriteFile(filepath.Join(root, "grown"), []byte("original and more"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "rewritten"), []byte("ORIGINAL"), 0o644); err != nil {
		t.Fatal(err)
	}
	testkit.WriteFile(t, filepath.Join(root, "new"), []byte("REPLACED"))
	if err := os.Chtimes(filepath.Join(root, "new"), old, old); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(root, "new"), filepath.Join(root, "replaced")); err != nil {
		t.Fatal(err)
	}

	var opens atomic.Int64
	res, err := archiveWith(b, root, ArchiveOptions{Parent: first.Tree}, countOpens(&opens))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"grown": "original and more", "rewritten": "ORIGINAL", "replaced": "REPLACED", "untouched": "original"}
	for name, data := range want {
		if got := string(archContent(t, b, archNodeAt(t, b, res.Tree, name))); got != data {
			t.Errorf("%s: content %q, want %q", name, got, data)
		}
	}
	if opens.Load() != 3 {
		t.Errorf("opened %d files, want the 3 modified ones", opens.Load())
	}
}

func TestArchiveRereadsFileThatChangedOnce(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, "f")
	testkit.WriteFile(t, path, []byte("first"))
	var once sync.Once
	var warned []string
	opts := ArchiveOptions{Warn: func(p string, err error) { warned = append(warned, p) }}
	b := newMemBlobs()
	res, err := archiveWith(b, root, opts, func(a *archiver) {
		a.afterRead = func(string) {
			once.Do(func() {
				if err := os.WriteFile(path, []byte("second, longer"), 0o644); err != nil {
					t.Error(err)
				}
			})
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	n := archNodeAt(t, b, res.Tree, "f")
	if got := string(archContent(t, b, n)); got != "second, longer" || n.Size != uint64(len(got)) {
		t.Errorf("content %q size %d, want the second version", got, n.Size)
	}
	if n.ChangedWhileRead || len(res.ChangedWhileRead) != 0 || len(warned) != 0 {
		t.Errorf("flagged %v %v, warned %q; a stable re-read is clean", n.ChangedWhileRead, res.ChangedWhileRead, warned)
	}
}

func TestArchiveGivesUpAfterThreeReadsOfAChangingFile(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, "log")
	testkit.WriteFile(t, path, []byte("line\n"))
	var reads int
	b := newMemBlobs()
	res, err := archiveWith(b, root, ArchiveOptions{}, func(a *archiver) {
		a.afterRead = func(string) {
			reads++
			f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = f.WriteString("line\n")
			f.Close()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if reads != readAttempts {
		t.Errorf("read %d times, want %d", reads, readAttempts)
	}
	n := archNodeAt(t, b, res.Tree, "log")
	if !n.ChangedWhileRead || !slices.Equal(res.ChangedWhileRead, []string{"log"}) {
		t.Errorf("node flag %v, result %q; want log flagged", n.ChangedWhileRead, res.ChangedWhileRead)
	}
	if got := archContent(t, b, n); uint64(len(got)) != n.Size || !bytes.HasPrefix(got, []byte("line\n")) {
		t.Errorf("content %q with size %d", got, n.Size)
	}
}

// TestArchiveFlagsFileChangedWhileRead appends to a file from another
// goroutine during the whole archive: every attempt sees it change.
func TestArchiveFlagsFileChangedWhileRead(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, "growing")
	testkit.WriteFile(t, path, testkit.RandomBytes(7, 16<<20))
	testkit.WriteFile(t, filepath.Join(root, "calm"), []byte("calm"))
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := f.Write([]byte{'x'}); err != nil {
				t.Error(err)
				return
			}
		}
	})
	var mu sync.Mutex
	var warnings []error
	opts := ArchiveOptions{Workers: 2, Warn: func(p string, err error) {
		mu.Lock()
		defer mu.Unlock()
		warnings = append(warnings, err)
	}}
	b := newMemBlobs()
	res, err := Archive(context.Background(), b, root, opts)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.ChangedWhileRead, []string{"growing"}) {
		t.Errorf("ChangedWhileRead %q, want [growing]", res.ChangedWhileRead)
	}
	n := archNodeAt(t, b, res.Tree, "growing")
	if !n.ChangedWhileRead || n.Size < 16<<20 || uint64(len(archContent(t, b, n))) != n.Size {
		t.Errorf("node flag %v size %d", n.ChangedWhileRead, n.Size)
	}
	if len(warnings) != 1 || !errors.Is(warnings[0], ErrChangedWhileRead) {
		t.Errorf("warnings %v, want one ErrChangedWhileRead", warnings)
	}
	if archNodeAt(t, b, res.Tree, "calm").ChangedWhileRead {
		t.Error("calm file flagged")
	}
}
