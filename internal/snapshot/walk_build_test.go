package snapshot

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/custodyhq/custody/internal/vault"
)

// This file builds test versions from literal descriptions and reads
// restored directories back, for the walk, diff and restore tests.

// ent describes one entry of a test version. Parent directories that are
// not listed are made with mode 0755.
type ent struct {
	path   string
	dir    bool
	chunks []string // a file's content, one blob per chunk
	target string   // set: a symlink
	mode   uint32   // 0: 0644 for files, 0755 for directories
	mtime  int64    // 0: testMTime
	uid    *uint32  // nil: the current user
	gid    *uint32
	xattrs []Xattr
	ino    uint64 // with links > 1: the hard link group
	links  uint64
}

// testMTime has nanoseconds, to catch restores that drop them.
const testMTime = 1_700_000_000_123_456_789

func (e ent) node() Node {
	n := Node{Mode: e.mode, ModTime: e.mtime, UID: uint32(os.Getuid()), GID: uint32(os.Getgid()),
		Xattrs: e.xattrs, Inode: e.ino, Links: e.links, Device: 42}
	if e.uid != nil {
		n.UID = *e.uid
	}
	if e.gid != nil {
		n.GID = *e.gid
	}
	if n.ModTime == 0 {
		n.ModTime = testMTime
	}
	switch {
	case e.dir:
		n.Type = TypeDir
		if n.Mode == 0 {
			n.Mode = 0o755
		}
	case e.target != "":
		n.Type = TypeSymlink
		n.Mode = 0o777
		n.SetLinkTarget([]byte(e.target))
	default:
		n.Type = TypeFile
		if n.Mode == 0 {
			n.Mode = 0o644
		}
	}
	if n.Links == 0 {
		n.Links = 1
	}
	return n
}

func splitDir(p string) (dir, name string) {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i], p[i+1:]
	}
	return "", p
}

// buildTree stores the version ents describe in b and returns its root tree.
func buildTree(t testing.TB, b Blobs, ents ...ent) vault.ID {
	t.Helper()
	nodes := map[string]*Node{}
	kids := map[string][]string{}
	add := func(p string, n Node) {
		dir, name := splitDir(p)
		n.SetName([]byte(name))
		if old := nodes[p]; old != nil {
			*old = n
			return
		}
		nodes[p] = &n
		kids[dir] = append(kids[dir], p)
	}
	var ensureDir func(p string)
	ensureDir = func(p string) {
		if p == "" || nodes[p] != nil {
			return
		}
		dir, _ := splitDir(p)
		ensureDir(dir)
		add(p, ent{dir: true}.node())
	}
	for _, e := range ents {
		dir, _ := splitDir(e.path)
		ensureDir(dir)
		n := e.node()
		for _, c := range e.chunks {
			n.Content = append(n.Content, saveBlob(t, b, vault.DataBlob, []byte(c)))
			n.Size += uint64(len(c))
		}
		add(e.path, n)
	}
	var build func(dir string) vault.ID
	build = func(dir string) vault.ID {
		var tr Tree
		for _, p := range kids[dir] {
			n := *nodes[p]
			if n.Type == TypeDir {
				id := build(p)
				n.Subtree = &id
			}
			tr.Nodes = append(tr.Nodes, n)
		}
		tr.Sort()
		enc, err := EncodeTree(&tr)
		if err != nil {
			t.Fatalf("encode tree %q: %v", dir, err)
		}
		return saveBlob(t, b, vault.TreeBlob, enc)
	}
	return build("")
}

func saveBlob(t testing.TB, b Blobs, typ vault.BlobType, p []byte) vault.ID {
	t.Helper()
	id := b.BlobID(p)
	if _, err := b.SaveBlob(context.Background(), typ, id, p); err != nil {
		t.Fatal(err)
	}
	return id
}

func u32(v uint32) *uint32 { return &v }

// tempDir is t.TempDir that can be removed even after a restore made
// read-only directories in it, which non-root cannot empty.
func tempDir(t *testing.T) string {
	dir := t.TempDir()
	t.Cleanup(func() {
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(p, 0o700)
			}
			return nil
		})
	})
	return dir
}

// countingBlobs counts loads and may act on them (cancel, fail).
type countingBlobs struct {
	Blobs
	loads  atomic.Int64
	onLoad func(n int64) error // called with the count before each load
}

func (c *countingBlobs) LoadBlob(ctx context.Context, id vault.ID) ([]byte, error) {
	n := c.loads.Add(1)
	if c.onLoad != nil {
		if err := c.onLoad(n); err != nil {
			return nil, err
		}
	}
	return c.Blobs.LoadBlob(ctx, id)
}

// entState is what a comparison of two directory trees looks at.
type entState struct {
	Type   NodeType
	Data   string // a file's size and SHA-256, or a symlink's target
	Mode   uint32
	UID    uint32
	GID    uint32
	MTime  int64
	Xattrs map[string]string // user.* only: others depend on the system
	Link   string            // hard links: the first path of the group
}

func digest(b []byte) string { return fmt.Sprintf("%d:%x", len(b), sha256.Sum256(b)) }

// dropSingleLinks clears Link where a group has one member in the map:
// its other links were outside what was compared.
func dropSingleLinks(m map[string]entState) {
	size := map[string]int{}
	for _, s := range m {
		if s.Link != "" {
			size[s.Link]++
		}
	}
	for p, s := range m {
		if s.Link != "" && size[s.Link] < 2 {
			s.Link = ""
			m[p] = s
		}
	}
}

// wantState is what restoring sub of tree should produce, keyed by path
// relative to the target.
func wantState(t testing.TB, b Blobs, tree vault.ID, sub string) map[string]entState {
	t.Helper()
	ctx := context.Background()
	top, err := Lookup(ctx, b, tree, sub)
	if err != nil {
		t.Fatal(err)
	}
	prefix := strings.Join(splitSub(sub), "/")
	if top.Type != TypeDir {
		prefix, _ = splitDir(prefix)
	}
	out := map[string]entState{}
	groups := map[devIno]string{}
	err = Walk(ctx, b, tree, sub, func(p string, n *Node) error {
		rel := strings.TrimPrefix(strings.TrimPrefix(p, prefix), "/")
		if p == prefix {
			return nil // the target itself
		}
		s := entState{Type: n.Type, Mode: n.Mode, UID: n.UID, GID: n.GID, MTime: n.ModTime, Xattrs: userXattrs(n.Xattrs)}
		switch n.Type {
		case TypeFile:
			var data []byte
			for _, id := range n.Content {
				c, err := b.LoadBlob(ctx, id)
				if err != nil {
					return err
				}
				data = append(data, c...)
			}
			s.Data = digest(data)
			if n.Links > 1 && n.Inode != 0 {
				k := devIno{n.Device, n.Inode}
				if groups[k] == "" {
					groups[k] = rel
				}
				s.Link = groups[k]
			}
		case TypeSymlink:
			s.Data, s.Mode = string(n.RawLinkTarget()), 0
		}
		out[rel] = s
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	dropSingleLinks(out)
	return out
}

func userXattrs(xs []Xattr) map[string]string {
	var m map[string]string
	for _, x := range xs {
		if name := string(x.RawName()); strings.HasPrefix(name, "user.") {
			if m == nil {
				m = map[string]string{}
			}
			m[name] = string(x.Value)
		}
	}
	return m
}

// scanDir reads the tree under dir (not dir itself) through one os.Root
// per directory, so that trees deeper than PATH_MAX can be read too.
func scanDir(t testing.TB, dir string) map[string]entState {
	t.Helper()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	out := map[string]entState{}
	scanRoot(t, root, "", out, map[uint64]string{})
	dropSingleLinks(out)
	return out
}

func scanRoot(t testing.TB, root *os.Root, prefix string, out map[string]entState, inodes map[uint64]string) {
	t.Helper()
	f, err := root.Open(".")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	fd := int(f.Fd())
	for _, name := range names {
		p := childPath(prefix, name)
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatal(err)
		}
		s := entState{Mode: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid, MTime: st.Mtim.Nano(),
			Xattrs: userXattrs(listXattrs(t, "/proc/self/fd/"+strconv.Itoa(fd)+"/"+name))}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			s.Type = TypeFile
			data, err := root.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			s.Data = digest(data)
			if st.Nlink > 1 {
				if inodes[st.Ino] == "" {
					inodes[st.Ino] = p
				}
				s.Link = inodes[st.Ino]
			}
		case unix.S_IFDIR:
			s.Type = TypeDir
			sub, err := root.OpenRoot(name)
			if err != nil {
				t.Fatal(err)
			}
			scanRoot(t, sub, p, out, inodes)
			sub.Close()
		case unix.S_IFLNK:
			s.Type = TypeSymlink
			target, err := root.Readlink(name)
			if err != nil {
				t.Fatal(err)
			}
			s.Data, s.Mode = target, 0
		default:
			s.Type = "special"
		}
		out[p] = s
	}
}

func listXattrs(t testing.TB, path string) []Xattr {
	t.Helper()
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(path, buf)
	if err == unix.ENOTSUP {
		return nil
	}
	if err != nil {
		t.Fatalf("llistxattr %s: %v", path, err)
	}
	var xs []Xattr
	for name := range strings.SplitSeq(strings.TrimSuffix(string(buf[:n]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		v := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(path, name, v)
		if err != nil {
			t.Fatalf("lgetxattr %s %s: %v", path, name, err)
		}
		xs = append(xs, Xattr{Name: name, Value: v[:m]})
	}
	return xs
}
