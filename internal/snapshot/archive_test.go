package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/custodyhq/custody/internal/testkit"
	"github.com/custodyhq/custody/internal/vault"
)

// spyBlobs counts what the archiver asks of the vault, and can fail.
type spyBlobs struct {
	*memBlobs
	dataSaves, treeSaves, loads atomic.Int64
	saveErr                     error
}

func newSpyBlobs() *spyBlobs { return &spyBlobs{memBlobs: newMemBlobs()} }

func (c *spyBlobs) SaveBlob(ctx context.Context, t vault.BlobType, id vault.ID, p []byte) (int, error) {
	if t == vault.DataBlob {
		c.dataSaves.Add(1)
	} else {
		c.treeSaves.Add(1)
	}
	if c.saveErr != nil {
		return 0, c.saveErr
	}
	return c.memBlobs.SaveBlob(ctx, t, id, p)
}

func (c *spyBlobs) LoadBlob(ctx context.Context, id vault.ID) ([]byte, error) {
	c.loads.Add(1)
	return c.memBlobs.LoadBlob(ctx, id)
}

// archiveWith runs the archiver with test hooks installed by setup.
func archiveWith(b Blobs, root string, opts ArchiveOptions, setup func(*archiver)) (*ArchiveResult, error) {
	a := newArchiver(b, opts)
	if setup != nil {
		setup(a)
	}
	return a.run(context.Background(), root)
}

func mustArchive(t testing.TB, b Blobs, root string, opts ArchiveOptions) *ArchiveResult {
	t.Helper()
	res, err := Archive(context.Background(), b, root, opts)
	if err != nil {
		t.Fatalf("Archive: %v", err)
	}
	return res
}

func archLoadTree(t testing.TB, b Blobs, id vault.ID) *Tree {
	t.Helper()
	p, err := b.LoadBlob(context.Background(), id)
	if err != nil {
		t.Fatalf("load tree: %v", err)
	}
	tr, err := DecodeTree(p)
	if err != nil {
		t.Fatalf("decode tree: %v", err)
	}
	return tr
}

// archNodeAt finds the node at a "/"-separated path below the root tree.
func archNodeAt(t testing.TB, b Blobs, root vault.ID, path string) *Node {
	t.Helper()
	tr := archLoadTree(t, b, root)
	parts := strings.Split(path, "/")
	for i, part := range parts {
		n := tr.Find([]byte(part))
		if n == nil {
			t.Fatalf("%q: no entry %q", path, part)
		}
		if i == len(parts)-1 {
			return n
		}
		if n.Subtree == nil {
			t.Fatalf("%q: %q is not a directory", path, part)
		}
		tr = archLoadTree(t, b, *n.Subtree)
	}
	return nil
}

func archContent(t testing.TB, b Blobs, n *Node) []byte {
	t.Helper()
	var out []byte
	for _, id := range n.Content {
		p, err := b.LoadBlob(context.Background(), id)
		if err != nil {
			t.Fatalf("load chunk: %v", err)
		}
		out = append(out, p...)
	}
	return out
}

func TestArchiveRecordsFilesDirsSymlinksAndMetadata(t *testing.T) {
	root := t.TempDir()
	big := testkit.RandomBytes(1, 9<<20) // several chunks: their order must survive the workers
	testkit.WriteFile(t, filepath.Join(root, "big.bin"), big)
	testkit.WriteFile(t, filepath.Join(root, "small.txt"), []byte("hello\n"))
	testkit.WriteFile(t, filepath.Join(root, "empty"), nil)
	testkit.WriteFile(t, filepath.Join(root, "sub/inner.txt"), []byte("inner"))
	if err := unix.Chmod(filepath.Join(root, "small.txt"), 0o4751); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chmod(filepath.Join(root, "sub"), 0o1750); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub/inner.txt", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("tar\xffget", filepath.Join(root, "rawlink")); err != nil {
		t.Fatal(err)
	}
	mtime := time.Unix(1700000000, 123456789)
	if err := os.Chtimes(filepath.Join(root, "small.txt"), mtime, mtime); err != nil {
		t.Fatal(err)
	}

	b := newMemBlobs()
	res := mustArchive(t, b, root, ArchiveOptions{Workers: 2})

	tests := []struct {
		path   string
		typ    NodeType
		mode   uint32
		data   []byte
		target string
	}{
		{path: "big.bin", typ: TypeFile, mode: 0o644, data: big},
		{path: "small.txt", typ: TypeFile, mode: 0o4751, data: []byte("hello\n")},
		{path: "empty", typ: TypeFile, mode: 0o644, data: nil},
		{path: "sub", typ: TypeDir, mode: 0o1750},
		{path: "sub/inner.txt", typ: TypeFile, mode: 0o644, data: []byte("inner")},
		{path: "link", typ: TypeSymlink, mode: 0o777, target: "sub/inner.txt"},
		{path: "rawlink", typ: TypeSymlink, mode: 0o777, target: "tar\xffget"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			n := archNodeAt(t, b, res.Tree, tt.path)
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(root, tt.path), &st); err != nil {
				t.Fatal(err)
			}
			if n.Type != tt.typ || n.Mode != tt.mode {
				t.Errorf("type %s mode %o, want %s %o", n.Type, n.Mode, tt.typ, tt.mode)
			}
			if n.UID != st.Uid || n.GID != st.Gid || n.User != "root" || n.Group != "root" {
				t.Errorf("owner %d:%d %q:%q, want %d:%d root:root", n.UID, n.GID, n.User, n.Group, st.Uid, st.Gid)
			}
			if n.ModTime != st.Mtim.Nano() || n.ChangeTime != st.Ctim.Nano() {
				t.Errorf("times %d %d, want %d %d", n.ModTime, n.ChangeTime, st.Mtim.Nano(), st.Ctim.Nano())
			}
			if n.Inode != st.Ino || n.Device != uint64(st.Dev) || n.Links != uint64(st.Nlink) {
				t.Errorf("inode %d dev %d links %d, want %d %d %d", n.Inode, n.Device, n.Links, st.Ino, st.Dev, st.Nlink)
			}
			switch tt.typ {
			case TypeFile:
				if got := archContent(t, b, n); !bytes.Equal(got, tt.data) || n.Size != uint64(len(tt.data)) {
					t.Errorf("content %d bytes (size %d), want %d bytes", len(got), n.Size, len(tt.data))
				}
			case TypeSymlink:
				if got := string(n.RawLinkTarget()); got != tt.target {
					t.Errorf("target %q, want %q", got, tt.target)
				}
			}
		})
	}
	if n := archNodeAt(t, b, res.Tree, "big.bin"); len(n.Content) < 3 {
		t.Errorf("big.bin has %d chunks, want several", len(n.Content))
	}
	if n := archNodeAt(t, b, res.Tree, "small.txt"); n.ModTime != mtime.UnixNano() {
		t.Errorf("mtime %d, want %d", n.ModTime, mtime.UnixNano())
	}
	want := ArchiveResult{Tree: res.Tree, Files: 4, Dirs: 2, Symlinks: 2, Bytes: uint64(len(big) + 6 + 5)}
	got := *res
	got.NewBytes, got.StoredBytes = 0, 0
	if !reflect.DeepEqual(got, want) {
		t.Errorf("result %+v, want %+v", got, want)
	}
	if res.NewBytes != res.Bytes || res.StoredBytes <= res.NewBytes {
		t.Errorf("NewBytes %d StoredBytes %d for %d new bytes", res.NewBytes, res.StoredBytes, res.Bytes)
	}
}

func TestArchiveRecordsXattrsSortedByName(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, "f")
	testkit.WriteFile(t, file, []byte("x"))
	for _, p := range []string{file, root + "/sub"} {
		if p != file {
			if err := os.Mkdir(p, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for _, x := range []struct{ name, value string }{{"user.zeta", "z"}, {"user.alpha", "a\x00b"}, {"user.empty", ""}} {
			if err := unix.Setxattr(p, x.name, []byte(x.value), 0); err != nil {
				if errors.Is(err, unix.ENOTSUP) {
					t.Skipf("filesystem has no user xattrs: %v", err)
				}
				t.Fatal(err)
			}
		}
	}
	if err := unix.Setxattr(file, "user.raw\xff", []byte("r"), 0); err != nil {
		t.Fatalf("non-UTF-8 xattr name: %v", err)
	}
	b := newMemBlobs()
	res := mustArchive(t, b, root, ArchiveOptions{})
	if n := archNodeAt(t, b, res.Tree, "f"); !slices.ContainsFunc(n.Xattrs, func(x Xattr) bool {
		return string(x.RawName()) == "user.raw\xff" && string(x.Value) == "r"
	}) {
		t.Errorf("non-UTF-8 xattr name lost: %+v", n.Xattrs)
	}
	for _, path := range []string{"f", "sub"} {
		n := archNodeAt(t, b, res.Tree, path)
		var got []string
		for _, x := range n.Xattrs {
			if strings.HasPrefix(x.Name, "user.") {
				got = append(got, x.Name+"="+string(x.Value))
			}
		}
		want := []string{"user.alpha=a\x00b", "user.empty=", "user.zeta=z"}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: xattrs %q, want %q", path, got, want)
		}
	}
}

func TestArchiveTreeIDIsDeterministic(t *testing.T) {
	root := t.TempDir()
	for i := range 40 {
		dir := filepath.Join(root, string(rune('a'+i%5)), string(rune('a'+i%3)))
		testkit.WriteFile(t, filepath.Join(dir, "f"+string(rune('0'+i%10))+".bin"), testkit.RandomBytes(uint64(i), 1000*i))
	}
	testkit.WriteFile(t, filepath.Join(root, "large"), testkit.RandomBytes(99, 6<<20))
	b := newMemBlobs()
	first := mustArchive(t, b, root, ArchiveOptions{Workers: 1})
	for _, opts := range []ArchiveOptions{{Workers: 2}, {Workers: 8}, {Workers: 3, Parent: first.Tree}} {
		if res := mustArchive(t, b, root, opts); res.Tree != first.Tree {
			t.Errorf("workers %d parent %v: tree %s, want %s", opts.Workers, !opts.Parent.IsZero(), res.Tree.Short(), first.Tree.Short())
		}
	}
}

func TestArchiveHardlinksRecordSameInode(t *testing.T) {
	root := t.TempDir()
	testkit.WriteFile(t, filepath.Join(root, "a"), []byte("shared"))
	testkit.WriteFile(t, filepath.Join(root, "d/keep"), nil)
	if err := os.Link(filepath.Join(root, "a"), filepath.Join(root, "d/b")); err != nil {
		t.Fatal(err)
	}
	b := newMemBlobs()
	res := mustArchive(t, b, root, ArchiveOptions{})
	x, y := archNodeAt(t, b, res.Tree, "a"), archNodeAt(t, b, res.Tree, "d/b")
	if x.Inode != y.Inode || x.Device != y.Device || x.Links != 2 || y.Links != 2 {
		t.Errorf("links: inode %d/%d dev %d/%d links %d/%d", x.Inode, y.Inode, x.Device, y.Device, x.Links, y.Links)
	}
	if string(archContent(t, b, x)) != "shared" || string(archContent(t, b, y)) != "shared" {
		t.Error("both links must carry the content")
	}
}

func TestArchiveRejectsRootThatIsNotADirectory(t *testing.T) {
	dir := t.TempDir()
	testkit.WriteFile(t, filepath.Join(dir, "file"), []byte("x"))
	for _, root := range []string{filepath.Join(dir, "file"), filepath.Join(dir, "missing")} {
		if _, err := Archive(context.Background(), newMemBlobs(), root, ArchiveOptions{}); err == nil {
			t.Errorf("Archive(%s) succeeded, want an error", root)
		}
	}
	_, err := Archive(context.Background(), newMemBlobs(), filepath.Join(dir, "missing"), ArchiveOptions{})
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing root: %v, want os.ErrNotExist", err)
	}
}

func TestArchiveReturnsStoreErrors(t *testing.T) {
	root := t.TempDir()
	for i := range 20 {
		testkit.WriteFile(t, filepath.Join(root, "d", string(rune('a'+i))), testkit.RandomBytes(uint64(i), 300<<10))
	}
	b := newSpyBlobs()
	b.saveErr = errors.New("disk full")
	_, err := Archive(context.Background(), b, root, ArchiveOptions{Workers: 2})
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Archive: %v, want the store error", err)
	}
}

func TestArchiveCancelledContextReturnsCanceled(t *testing.T) {
	root := t.TempDir()
	for i := range 30 {
		testkit.WriteFile(t, filepath.Join(root, string(rune('a'+i%4)), string(rune('a'+i))), testkit.RandomBytes(uint64(i), 1<<20))
	}
	t.Run("before start", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := Archive(ctx, newMemBlobs(), root, ArchiveOptions{}); !errors.Is(err, context.Canceled) {
			t.Errorf("err %v, want context.Canceled", err)
		}
	})
	t.Run("while running", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var once sync.Once
		opts := ArchiveOptions{Workers: 2, Progress: func(ArchiveProgress) { once.Do(cancel) }}
		start := time.Now()
		if _, err := Archive(ctx, newMemBlobs(), root, opts); !errors.Is(err, context.Canceled) {
			t.Errorf("err %v, want context.Canceled", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("cancellation took %v", d)
		}
	})
}

// TestSameNodesComparesEveryField guards the parent-reuse shortcut: a
// field sameNode ignores would let a changed directory keep its old tree.
func TestSameNodesComparesEveryField(t *testing.T) {
	if n := reflect.TypeFor[Node]().NumField(); n != 20 {
		t.Errorf("Node has %d fields; teach sameNode the new ones, then update this count", n)
	}
	if n := reflect.TypeFor[Xattr]().NumField(); n != 3 {
		t.Errorf("Xattr has %d fields; teach sameNode the new ones, then update this count", n)
	}
	id := vault.ID{1}
	base := func() Node {
		return Node{Name: "n", Type: TypeFile, Content: []vault.ID{id}, Xattrs: []Xattr{{Name: "user.a", Value: []byte{}}}}
	}
	x := base()
	v := reflect.ValueOf(&x).Elem()
	for i := range v.NumField() {
		y := base()
		f := reflect.ValueOf(&y).Elem().Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString(f.String() + "x")
		case reflect.Uint32, reflect.Uint64:
			f.SetUint(f.Uint() + 1)
		case reflect.Int64:
			f.SetInt(f.Int() + 1)
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Slice:
			if f.Type().Elem().Kind() == reflect.Uint8 {
				f.SetBytes([]byte{0xff})
			} else {
				f.Set(reflect.MakeSlice(f.Type(), 2, 2))
			}
		case reflect.Pointer:
			f.Set(reflect.ValueOf(&id))
		}
		if sameNodes([]Node{x}, []Node{y}) {
			t.Errorf("sameNodes ignores a change of %s", v.Type().Field(i).Name)
		}
	}
	y := base()
	y.Xattrs[0].Value = nil // encodes as null, not ""
	if sameNodes([]Node{x}, []Node{y}) {
		t.Error("sameNodes ignores nil versus empty xattr value")
	}
}

// BenchmarkArchiveNoChange10k archives 10,000 small files in 10
// directories that have not changed since the parent version: the common
// case of a scheduled snapshot, where nothing may be read.
func BenchmarkArchiveNoChange10k(b *testing.B) {
	root := b.TempDir()
	for d := range 10 {
		dir := filepath.Join(root, fmt.Sprintf("dir%02d", d))
		if err := os.Mkdir(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		for f := range 1000 {
			data := fmt.Appendf(nil, "file %d of directory %d\n", f, d)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%04d.txt", f)), data, 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	blobs := newMemBlobs()
	parent := mustArchive(b, blobs, root, ArchiveOptions{})
	opts := ArchiveOptions{Parent: parent.Tree}
	b.ReportAllocs()
	for b.Loop() {
		res, err := Archive(context.Background(), blobs, root, opts)
		if err != nil {
			b.Fatal(err)
		}
		if res.Tree != parent.Tree || res.NewBytes != 0 {
			b.Fatal("an unchanged tree changed")
		}
	}
	b.ReportMetric(float64(10_000*b.N)/b.Elapsed().Seconds(), "files/s")
}
