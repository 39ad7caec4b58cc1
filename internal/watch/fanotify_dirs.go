package watch

import (
	"encoding/binary"
	"io/fs"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// watchedRoot is a root as the caller named it and as the kernel names it
// (symlinks resolved), which is how paths read back from handles look.
type watchedRoot struct {
	given, real string
}

// outward is real, a path under r.real, as the caller knows it: under
// r.given.
func (r watchedRoot) outward(real string) string {
	switch {
	case r.given == r.real:
		return real
	case r.real == "/":
		return r.given + real
	}
	return r.given + real[len(r.real):]
}

// rootSet is the watched roots, deepest first, so that the first match is
// the innermost root when roots nest.
type rootSet []watchedRoot

func newRootSet(roots []watchedRoot) rootSet {
	rs := append(rootSet(nil), roots...)
	sort.SliceStable(rs, func(i, j int) bool { return len(rs[i].real) > len(rs[j].real) })
	return rs
}

// match is the index of the innermost root holding p, or -1.
func (rs rootSet) match(p string) int {
	for i, r := range rs {
		if under(p, r.real) {
			return i
		}
	}
	return -1
}

// ancestorOf reports whether p is a strict ancestor of some root: a name
// in it can be a root or lead to one.
func (rs rootSet) ancestorOf(p string) bool {
	for _, r := range rs {
		if r.real != p && under(r.real, p) {
			return true
		}
	}
	return false
}

// under reports whether p is dir or inside it.
func under(p, dir string) bool {
	if dir == "/" {
		return strings.HasPrefix(p, "/")
	}
	return strings.HasPrefix(p, dir) && (len(p) == len(dir) || p[len(dir)] == '/')
}

// strictlyUnder reports whether p is inside dir and not dir itself; an
// empty dir holds nothing.
func strictlyUnder(p, dir string) bool {
	return dir != "" && p != dir && under(p, dir)
}

// join is dir/name for a kernel-given dir path and entry name.
func join(dir string, name []byte) string {
	if len(name) == 0 || string(name) == "." {
		return dir
	}
	if dir == "/" {
		return "/" + string(name)
	}
	return dir + "/" + string(name)
}

// dirEntry is what the cache knows about one directory.
type dirEntry struct {
	path     string // absolute, as the kernel names it
	root     int    // rootSet index of the innermost root holding path, or -1
	ancestor bool   // path is a strict ancestor of a root
	// gone: the directory no longer resolved when it was looked up, and
	// path is its last known name (events get Detail["unresolved"]).
	gone bool
}

// relevant reports whether events in the directory can concern a root.
func (e dirEntry) relevant() bool { return e.root >= 0 || e.ancestor }

const (
	// maxPrimed bounds the directories learned by the initial walk.
	maxPrimed = 1 << 17
	// maxOutside bounds cached directories that cannot concern a root;
	// past it they are forgotten and looked up again when needed.
	maxOutside = 1 << 13
	// maxLookAhead bounds the chain of parents resolved from later events.
	maxLookAhead = 32
)

// dirCache maps directory file handles, as fanotify reports them (fsid
// followed by a struct file_handle, used as the key bytes), to paths.
//
// Directories under the roots are learned by a walk when the source
// starts, from mkdir and rename events (which carry the new directory's
// handle with FAN_REPORT_TARGET_FID), and otherwise by opening the handle
// (open_by_handle_at) and reading the path back from /proc/self/fd. The
// cache follows the event stream: a directory rename rewrites the paths
// of the directory and of everything cached below it, an rmdir drops it.
//
// Directories that cannot concern a root are kept apart, in a map bounded
// by maxOutside: the filesystem mark sees the whole filesystem, and a
// rename there must not scan the directories of the roots. (Nothing
// relevant can be below an irrelevant directory: it would be under a
// root, or lead to one, and so would the directory.)
type dirCache struct {
	roots  rootSet
	mounts map[[8]byte]int     // fsid → an open directory on that filesystem
	in     map[string]dirEntry // relevant() directories
	out    map[string]dirEntry // the others
	misses map[string]struct{} // handles that failed during this read
	link   []byte
}

func newDirCache(roots rootSet) *dirCache {
	return &dirCache{
		roots:  roots,
		mounts: make(map[[8]byte]int),
		in:     make(map[string]dirEntry),
		out:    make(map[string]dirEntry),
		misses: make(map[string]struct{}),
		link:   make([]byte, unix.PathMax),
	}
}

func (c *dirCache) entry(path string, gone bool) dirEntry {
	return dirEntry{path: path, root: c.roots.match(path), ancestor: c.roots.ancestorOf(path), gone: gone}
}

func (c *dirCache) lookup(key []byte) (dirEntry, bool) {
	if e, ok := c.in[string(key)]; ok {
		return e, true
	}
	e, ok := c.out[string(key)]
	return e, ok
}

func (c *dirCache) store(key string, e dirEntry) {
	if e.relevant() {
		delete(c.out, key)
		c.in[key] = e
		return
	}
	delete(c.in, key)
	if len(c.out) >= maxOutside {
		clear(c.out) // looked up again when needed
	}
	c.out[key] = e
}

func (c *dirCache) forget(key []byte) {
	delete(c.in, string(key))
	delete(c.out, string(key))
}

// reset forgets every directory, as if none had been seen.
func (c *dirCache) reset() {
	clear(c.in)
	clear(c.out)
}

// learn records that the directory with handle key is at path.
func (c *dirCache) learn(key []byte, path string) {
	c.store(string(key), c.entry(path, false))
}

// moved follows a directory rename from oldPath to newPath: the directory
// itself (key, when known) and every cached directory below it.
func (c *dirCache) moved(key []byte, oldPath, newPath string) {
	if key != nil {
		c.learn(key, newPath)
	}
	if oldPath == "/" {
		return // the root of a filesystem does not move
	}
	prefix := oldPath + "/"
	var moves []string
	scan := func(m map[string]dirEntry) {
		for k, e := range m {
			if strings.HasPrefix(e.path, prefix) {
				moves = append(moves, k)
			}
		}
	}
	if c.entry(oldPath, false).relevant() {
		scan(c.in)
	}
	scan(c.out)
	for _, k := range moves {
		e, _ := c.lookup([]byte(k))
		c.store(k, c.entry(newPath+e.path[len(oldPath):], e.gone))
	}
}

// newRead starts a read: handles that failed before may be named by the
// events of this one.
func (c *dirCache) newRead() {
	if len(c.misses) > 0 {
		clear(c.misses)
	}
}

// resolve is the directory with handle key. rest is the rest of the read
// buffer after the event being resolved: when the handle no longer opens,
// a later event that removed or renamed the directory names it.
func (c *dirCache) resolve(key []byte, rest []byte) (dirEntry, bool) {
	if e, ok := c.lookup(key); ok {
		return e, true
	}
	return c.resolveSlow(key, rest, 0)
}

func (c *dirCache) resolveSlow(key []byte, rest []byte, depth int) (dirEntry, bool) {
	if e, ok := c.lookup(key); ok {
		return e, true
	}
	if _, ok := c.misses[string(key)]; ok {
		return dirEntry{}, false
	}
	e, ok := c.open(key)
	if !ok && depth < maxLookAhead {
		e, ok = c.lookAhead(key, rest, depth)
	}
	if !ok {
		c.misses[string(key)] = struct{}{}
		return dirEntry{}, false
	}
	c.store(string(key), e)
	return e, true
}

// open resolves key with open_by_handle_at and /proc/self/fd.
func (c *dirCache) open(key []byte) (dirEntry, bool) {
	if len(key) < 16 {
		return dirEntry{}, false
	}
	mfd, ok := c.mounts[[8]byte(key[:8])]
	if !ok {
		return dirEntry{}, false
	}
	typ := int32(binary.NativeEndian.Uint32(key[12:16]))
	fd, err := unix.OpenByHandleAt(mfd, unix.NewFileHandle(typ, key[16:]), unix.O_PATH|unix.O_CLOEXEC)
	if err != nil {
		return dirEntry{}, false // ESTALE: deleted
	}
	defer unix.Close(fd)
	n, err := unix.Readlink("/proc/self/fd/"+strconv.Itoa(fd), c.link)
	if err != nil || n == 0 || n >= len(c.link) || c.link[0] != '/' {
		return dirEntry{}, false
	}
	path := string(c.link[:n])
	var st unix.Stat_t
	gone := unix.Fstat(fd, &st) == nil && st.Nlink == 0
	if gone {
		path = strings.TrimSuffix(path, " (deleted)")
	}
	return c.entry(path, gone), true
}

// lookAhead finds, in the events after the current one, the rmdir or
// rename that took the directory key away, and builds its path from that
// event's parent and name.
func (c *dirCache) lookAhead(key []byte, rest []byte, depth int) (dirEntry, bool) {
	for len(rest) > 0 {
		r, n, err := parseEvent(rest)
		if err != nil {
			return dirEntry{}, false
		}
		rest = rest[n:]
		if r.mask&unix.FAN_ONDIR == 0 || r.mask&(unix.FAN_DELETE|unix.FAN_RENAME) == 0 ||
			string(r.obj) != string(key) || r.dir.key == nil || len(r.dir.name) == 0 {
			continue
		}
		parent, ok := c.resolveSlow(r.dir.key, rest, depth+1)
		if !ok {
			return dirEntry{}, false
		}
		return c.entry(join(parent.path, r.dir.name), true), true
	}
	return dirEntry{}, false
}

// fsKey is the fsid of the filesystem holding path, as fanotify reports
// it in front of file handles.
func fsKey(path string) ([8]byte, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return [8]byte{}, err
	}
	var k [8]byte
	binary.NativeEndian.PutUint32(k[0:4], uint32(st.Fsid.Val[0]))
	binary.NativeEndian.PutUint32(k[4:8], uint32(st.Fsid.Val[1]))
	return k, nil
}

// handleKey is the cache key of a handle from name_to_handle_at on the
// filesystem fsid: the bytes fanotify reports for it.
func handleKey(fsid [8]byte, h unix.FileHandle) string {
	b := make([]byte, 16+h.Size())
	copy(b, fsid[:])
	binary.NativeEndian.PutUint32(b[8:12], uint32(h.Size()))
	binary.NativeEndian.PutUint32(b[12:16], uint32(h.Type()))
	copy(b[16:], h.Bytes())
	return string(b)
}

// prime walks root and caches every directory in it, so that events in
// a directory already gone when they are read still get their path. It
// calls mount for each directory on another mount than root (a mount
// point) to learn its fsid; mount returns false to skip that tree. It
// stops after limit directories and reports how many it cached and
// whether it finished.
func (c *dirCache) prime(root string, fsid [8]byte, limit int, mount func(path string) ([8]byte, bool)) (int, bool) {
	_, rootMount, err := unix.NameToHandleAt(unix.AT_FDCWD, root, 0)
	if err != nil {
		return 0, false
	}
	fsids := map[int][8]byte{rootMount: fsid}
	n, complete := 0, true
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil // unreadable trees are learned when events name them
		}
		if n >= limit {
			complete = false
			return filepath.SkipAll
		}
		h, mnt, err := unix.NameToHandleAt(unix.AT_FDCWD, p, 0)
		if err != nil {
			return filepath.SkipDir
		}
		id, ok := fsids[mnt]
		if !ok {
			if id, ok = mount(p); !ok {
				return filepath.SkipDir
			}
			fsids[mnt] = id
		}
		c.store(handleKey(id, h), c.entry(p, false))
		n++
		return nil
	})
	return n, complete
}
