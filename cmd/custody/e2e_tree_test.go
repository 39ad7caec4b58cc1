package main_test

// Helpers that make datasets and compare directory trees exactly. Trees are
// walked through os.Root, one directory at a time, so paths longer than
// PATH_MAX and names with any bytes work.

import (
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/custodyhq/custody/internal/testkit"
)

// textLines are the lines textBytes draws from.
var textLines = sync.OnceValue(func() []string {
	words := strings.Fields(`label image train test split epoch loss accuracy cat dog tensor batch
		gradient feature vector token sample dataset model weight bias layer dropout shard checkpoint
		precision recall annotation bounding box pixel frame audio text corpus vocabulary embedding`)
	rng := newRandSeed(7)
	lines := make([]string, 4096)
	for i := range lines {
		lines[i] = fmt.Sprintf("%d,%s,%s,%.4f\n", rng.IntN(1_000_000), words[rng.IntN(len(words))], words[rng.IntN(len(words))], rng.Float64())
	}
	return lines
})

// textBytes returns n bytes of CSV-like text that compresses well; two
// calls give different text.
func textBytes(rng *rand.Rand, n int) []byte {
	lines := textLines()
	b := make([]byte, 0, n+64)
	for len(b) < n {
		b = append(b, lines[rng.IntN(len(lines))]...)
	}
	return b[:n]
}

// makeDataset writes nRandom random files of randomSize bytes and nText text
// files of textSize bytes under dir (in a few subdirectories) and returns
// the relative names of the random files.
func makeDataset(t *testing.T, rng *rand.Rand, dir string, nRandom, randomSize, nText, textSize int) []string {
	t.Helper()
	var names []string
	for i := range nRandom {
		name := fmt.Sprintf("blobs/part-%d/rand-%03d.bin", i%3, i)
		testkit.WriteFile(t, filepath.Join(dir, name), testkit.RandomBytes(rng.Uint64(), randomSize))
		names = append(names, name)
	}
	for i := range nText {
		testkit.WriteFile(t, filepath.Join(dir, fmt.Sprintf("text/shard-%03d.csv", i)), textBytes(rng, textSize))
	}
	return names
}

// entry is everything a restore must reproduce about one directory entry,
// plus what identifies it (inode, links, allocated blocks).
type entry struct {
	typ      string // file, dir, symlink or other
	perm     uint32 // permission, setuid, setgid and sticky bits
	uid, gid uint32
	mtime    int64 // nanoseconds
	size     int64
	blocks   int64 // 512-byte blocks allocated
	target   string
	xattrs   string // user.* attributes, "name=value" sorted, NUL-separated
	sum      [32]byte
	ino      uint64
	nlink    uint64
}

// scanTree describes every entry below dir (not dir itself), keyed by the
// "/"-separated path relative to dir.
func scanTree(t *testing.T, dir string) map[string]*entry {
	t.Helper()
	r, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out := map[string]*entry{}
	scanDir(t, r, "", out)
	return out
}

func scanDir(t *testing.T, r *os.Root, prefix string, out map[string]*entry) {
	t.Helper()
	d, err := r.Open(".")
	if err != nil {
		t.Fatal(err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		path := prefix + name
		fi, err := r.Lstat(name)
		if err != nil {
			t.Fatalf("lstat %q: %v", path, err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		e := &entry{perm: st.Mode & 0o7777, uid: st.Uid, gid: st.Gid, mtime: st.Mtim.Nano(), size: st.Size,
			blocks: st.Blocks, ino: st.Ino, nlink: uint64(st.Nlink)}
		out[path] = e
		switch st.Mode & syscall.S_IFMT {
		case syscall.S_IFREG:
			e.typ = "file"
			f, err := r.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
			if err != nil {
				t.Fatalf("open %q: %v", path, err)
			}
			h := sha256.New()
			if _, err := io.Copy(h, f); err != nil {
				t.Fatalf("read %q: %v", path, err)
			}
			h.Sum(e.sum[:0])
			e.xattrs = userXattrs(t, f)
			f.Close()
		case syscall.S_IFDIR:
			e.typ = "dir"
			sub, err := r.OpenRoot(name)
			if err != nil {
				t.Fatalf("open %q: %v", path, err)
			}
			f, err := sub.Open(".")
			if err != nil {
				t.Fatal(err)
			}
			e.xattrs = userXattrs(t, f)
			f.Close()
			scanDir(t, sub, path+"/", out)
			sub.Close()
		case syscall.S_IFLNK:
			e.typ = "symlink"
			if e.target, err = r.Readlink(name); err != nil {
				t.Fatalf("readlink %q: %v", path, err)
			}
		default:
			e.typ = "other"
		}
	}
}

// userXattrs lists the user.* extended attributes of an open file.
func userXattrs(t *testing.T, f *os.File) string {
	t.Helper()
	fd := int(f.Fd())
	buf := make([]byte, 64<<10)
	n, err := unix.Flistxattr(fd, buf)
	if err == unix.ENOTSUP {
		return ""
	}
	if err != nil {
		t.Fatalf("listxattr %s: %v", f.Name(), err)
	}
	var attrs []string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if !strings.HasPrefix(name, "user.") {
			continue
		}
		val := make([]byte, 64<<10)
		m, err := unix.Fgetxattr(fd, name, val)
		if err != nil {
			t.Fatalf("getxattr %s %s: %v", f.Name(), name, err)
		}
		attrs = append(attrs, name+"="+string(val[:m]))
	}
	slices.Sort(attrs)
	return strings.Join(attrs, "\x00")
}

// compareTrees fails t for every difference between the trees at want and
// got that a restore should not have: set of paths, type, content, mode,
// owner (as root), mtime, symlink target, user xattrs and hard-link groups.
func compareTrees(t *testing.T, want, got string) {
	t.Helper()
	compareEntries(t, scanTree(t, want), scanTree(t, got))
}

func compareEntries(t *testing.T, want, got map[string]*entry) {
	t.Helper()
	var diffs []string
	add := func(path, format string, a ...any) {
		diffs = append(diffs, strconv.Quote(path)+": "+fmt.Sprintf(format, a...))
	}
	for _, p := range sortedKeys(want) {
		w, g := want[p], got[p]
		if g == nil {
			add(p, "missing from the restore")
			continue
		}
		if w.typ != g.typ {
			add(p, "type %s, want %s", g.typ, w.typ)
			continue
		}
		if w.typ != "symlink" && w.perm != g.perm {
			add(p, "mode %#o, want %#o", g.perm, w.perm)
		}
		if isRoot() && (w.uid != g.uid || w.gid != g.gid) {
			add(p, "owner %d:%d, want %d:%d", g.uid, g.gid, w.uid, w.gid)
		}
		if w.mtime != g.mtime {
			add(p, "mtime %d, want %d", g.mtime, w.mtime)
		}
		switch w.typ {
		case "file":
			if w.size != g.size || w.sum != g.sum {
				add(p, "content differs (size %d, want %d)", g.size, w.size)
			}
		case "symlink":
			if w.target != g.target {
				add(p, "target %q, want %q", g.target, w.target)
			}
		}
		if w.typ != "symlink" && w.xattrs != g.xattrs {
			add(p, "xattrs %q, want %q", g.xattrs, w.xattrs)
		}
	}
	for _, p := range sortedKeys(got) {
		if want[p] == nil {
			add(p, "in the restore but not in the source")
		}
	}
	wl, gl := linkGroups(want), linkGroups(got)
	for _, p := range sortedKeys(want) {
		if got[p] != nil && want[p].typ == "file" && wl[p] != gl[p] {
			add(p, "hard-linked with [%s], want [%s]", gl[p], wl[p])
		}
	}
	for i, d := range diffs {
		if i == 40 {
			t.Errorf("... and %d more differences", len(diffs)-i)
			break
		}
		t.Errorf("restore differs: %s", d)
	}
}

// linkGroups maps each regular file to the sorted paths sharing its inode.
func linkGroups(es map[string]*entry) map[string]string {
	byIno := map[uint64][]string{}
	for p, e := range es {
		if e.typ == "file" {
			byIno[e.ino] = append(byIno[e.ino], p)
		}
	}
	out := map[string]string{}
	for _, ps := range byIno {
		sort.Strings(ps)
		var q []string
		for _, p := range ps {
			q = append(q, strconv.Quote(p))
		}
		for _, p := range ps {
			out[p] = strings.Join(q, " ")
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// setTimes gives every entry below dir (bottom-up, symlinks themselves) a
// distinct mtime with a non-zero nanosecond part.
func setTimes(t *testing.T, dir string, rng *rand.Rand) {
	t.Helper()
	r, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	setTimesIn(t, r, rng)
}

func setTimesIn(t *testing.T, r *os.Root, rng *rand.Rand) {
	t.Helper()
	d, err := r.Open(".")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		fi, err := r.Lstat(name)
		if err != nil {
			t.Fatal(err)
		}
		if fi.IsDir() {
			sub, err := r.OpenRoot(name)
			if err != nil {
				t.Fatal(err)
			}
			setTimesIn(t, sub, rng)
			sub.Close()
		}
		ns := int64(1_500_000_000)*1e9 + rng.Int64N(3e17) // 2017 .. 2026
		if ns%1000 == 0 {
			ns++
		}
		ts := unix.NsecToTimespec(ns)
		if err := unix.UtimesNanoAt(int(d.Fd()), name, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatalf("set times of %q: %v", name, err)
		}
	}
}

// makeDeep creates levels nested directories with names of nameLen bytes
// under base, a file at the bottom, and returns the file's relative path.
func makeDeep(t *testing.T, base string, levels, nameLen int) string {
	t.Helper()
	r, err := os.OpenRoot(base)
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for i := range levels {
		name := fmt.Sprintf("%03d-%s", i, strings.Repeat("d", nameLen-4))
		if err := r.Mkdir(name, 0o755); err != nil {
			t.Fatal(err)
		}
		sub, err := r.OpenRoot(name)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		r = sub
		parts = append(parts, name)
	}
	defer r.Close()
	if err := r.WriteFile("bottom.txt", []byte("deep down\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return strings.Join(append(parts, "bottom.txt"), "/")
}

// vaultListing describes every file under dir by name, size, mode and
// mtime, and every directory by name, for before/after comparisons. The
// audit trail (catalog and checkpoints) is left out: a failed attempt is
// rightly recorded there, and that is the only change it may make.
func vaultListing(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "checkpoints" || strings.HasPrefix(rel, "catalog.db") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			out = append(out, rel+"/")
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		out = append(out, fmt.Sprintf("%s %d %v %d", rel, fi.Size(), fi.Mode(), fi.ModTime().UnixNano()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// assertUnchanged fails t if the listing of dir differs from before.
func assertUnchanged(t *testing.T, dir string, before []string) {
	t.Helper()
	after := vaultListing(t, dir)
	if slices.Equal(before, after) {
		return
	}
	t.Errorf("%s changed:\nbefore:\n  %s\nafter:\n  %s", dir, strings.Join(before, "\n  "), strings.Join(after, "\n  "))
}

// dirSize is the total size of the regular files under dir.
func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// packs lists the pack files of a vault, largest first.
func packs(t *testing.T, vault string) []string {
	t.Helper()
	var out []string
	var sizes = map[string]int64{}
	err := filepath.WalkDir(filepath.Join(vault, "data"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && len(d.Name()) == 64 {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			out = append(out, p)
			sizes[p] = fi.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(out, func(a, b string) int { return int(sizes[b] - sizes[a]) })
	return out
}

// objects lists the names in one folder of a vault (versions, index, keys...).
func objects(t *testing.T, vault, kind string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(vault, kind))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// flipByte inverts one byte of a (read-only) vault file in place.
func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := []byte{0}
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}
