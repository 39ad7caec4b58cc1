package snapshot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os/user"
	"slices"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// The scanner reads directories through file descriptors (getdents64,
// fstatat, openat), never through joined path strings, so trees deeper than
// PATH_MAX work and a directory renamed mid-scan cannot redirect us.

// dirEntries holds the names of one directory, sorted by raw bytes. Names
// live NUL-terminated in one arena so that a directory of 100,000 entries
// costs a few allocations, not 100,000.
type dirEntries struct {
	arena []byte
	list  []dirEntry
}

type dirEntry struct{ off, n uint32 }

// name is entry i's name without its terminating NUL.
func (d *dirEntries) name(i int) []byte {
	e := d.list[i]
	return d.arena[e.off : e.off+e.n : e.off+e.n]
}

var direntBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// readDirEntries lists the directory open at fd, without "." and "..".
func readDirEntries(fd int) (*dirEntries, error) {
	bp := direntBufs.Get().(*[]byte)
	defer direntBufs.Put(bp)
	d := &dirEntries{}
	for {
		n, err := unix.ReadDirent(fd, *bp)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			break
		}
		d.parse((*bp)[:n])
	}
	slices.SortFunc(d.list, func(x, y dirEntry) int {
		return bytes.Compare(d.arena[x.off:x.off+x.n], d.arena[y.off:y.off+y.n])
	})
	return d, nil
}

// Layout of struct linux_dirent64, the same on every Linux architecture.
const (
	direntIno    = 0
	direntReclen = 16
	direntName   = 19
)

func (d *dirEntries) parse(b []byte) {
	for len(b) >= direntName {
		reclen := int(binary.NativeEndian.Uint16(b[direntReclen:]))
		if reclen < direntName || reclen > len(b) {
			return // cannot happen with a sane kernel; stop rather than loop
		}
		rec := b[:reclen]
		b = b[reclen:]
		if binary.NativeEndian.Uint64(rec[direntIno:]) == 0 {
			continue // a deleted entry some filesystems report
		}
		name := rec[direntName:]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		if len(name) == 0 || string(name) == "." || string(name) == ".." {
			continue
		}
		off := len(d.arena)
		d.arena = append(d.arena, name...)
		d.arena = append(d.arena, 0)
		d.list = append(d.list, dirEntry{off: uint32(off), n: uint32(len(name))})
	}
}

// setStat records the metadata of st in n; it leaves name, type and
// content alone.
func (n *Node) setStat(st *unix.Stat_t) {
	n.Mode = st.Mode & 0o7777
	n.UID, n.GID = st.Uid, st.Gid
	n.Size = uint64(st.Size)
	n.ModTime = st.Mtim.Nano()
	n.ChangeTime = st.Ctim.Nano()
	n.Inode = st.Ino
	n.Device = uint64(st.Dev)
	n.Links = uint64(st.Nlink)
}

// specialKind names the file types the archiver skips, or returns "".
func specialKind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return "named pipe"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFBLK:
		return "block device"
	}
	return "unknown file type"
}

// readXattrs lists and reads all extended attributes through list and get
// (the f- or l- variants of the syscalls), sorted by name. A filesystem
// without xattr support (ENOTSUP) or a refusal to list them (EPERM) means
// none; an attribute removed between list and get is left out.
func readXattrs(list func([]byte) (int, error), get func(string, []byte) (int, error)) ([]Xattr, error) {
	var names []byte
	for attempt := 0; ; attempt++ {
		size, err := list(nil)
		if err != nil || size == 0 {
			return nil, noXattrs(err)
		}
		names = make([]byte, size)
		size, err = list(names)
		if err == unix.ERANGE && attempt < 8 {
			continue // grew between the two calls
		}
		if err != nil {
			return nil, noXattrs(err)
		}
		names = names[:size]
		break
	}
	var xs []Xattr
	for name := range bytes.SplitSeq(names, []byte{0}) {
		if len(name) == 0 {
			continue
		}
		v, err := readXattr(get, string(name))
		if err == unix.ENODATA {
			continue
		}
		if err != nil {
			return nil, noXattrs(err)
		}
		x := Xattr{Value: v}
		x.SetName(name)
		xs = append(xs, x)
	}
	slices.SortFunc(xs, func(a, b Xattr) int { return bytes.Compare(a.RawName(), b.RawName()) })
	return xs, nil
}

func readXattr(get func(string, []byte) (int, error), name string) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		size, err := get(name, nil)
		if err != nil {
			return nil, err
		}
		v := make([]byte, size)
		if size == 0 {
			return v, nil
		}
		size, err = get(name, v)
		if err == unix.ERANGE && attempt < 8 {
			continue
		}
		if err != nil {
			return nil, err
		}
		return v[:size], nil
	}
}

func noXattrs(err error) error {
	if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EPERM) {
		return nil
	}
	return err
}

// fdXattrs reads the xattrs of an open file or directory.
func fdXattrs(fd int) ([]Xattr, error) {
	return readXattrs(
		func(b []byte) (int, error) { return unix.Flistxattr(fd, b) },
		func(name string, b []byte) (int, error) { return unix.Fgetxattr(fd, name, b) })
}

// entryXattrs reads the xattrs of the entry name in dirfd without opening
// it (a symlink cannot be opened). It names the entry through
// /proc/self/fd, which keeps the path short however deep the tree is.
func entryXattrs(dirfd int, name string) ([]Xattr, error) {
	path := "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + name
	xs, err := readXattrs(
		func(b []byte) (int, error) { return unix.Llistxattr(path, b) },
		func(attr string, b []byte) (int, error) { return unix.Lgetxattr(path, attr, b) })
	if errors.Is(err, unix.ENOENT) {
		return nil, nil // no /proc, or the link vanished: record none
	}
	return xs, err
}

// readLinkAt reads the target of the symlink name in dirfd.
func readLinkAt(dirfd int, name string, size int64) ([]byte, error) {
	n := max(int(size)+1, 256)
	for {
		buf := make([]byte, n)
		got, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return nil, err
		}
		if got < len(buf) {
			return buf[:got], nil
		}
		n *= 2 // the target grew since fstatat
	}
}

// idNames caches user and group names by id; "" when unknown.
type idNames struct {
	mu     sync.RWMutex
	users  map[uint32]string
	groups map[uint32]string
}

func (c *idNames) user(uid uint32) string {
	return c.lookup(&c.users, uid, func(id string) (string, error) {
		u, err := user.LookupId(id)
		if err != nil {
			return "", err
		}
		return u.Username, nil
	})
}

func (c *idNames) group(gid uint32) string {
	return c.lookup(&c.groups, gid, func(id string) (string, error) {
		g, err := user.LookupGroupId(id)
		if err != nil {
			return "", err
		}
		return g.Name, nil
	})
}

func (c *idNames) lookup(m *map[uint32]string, id uint32, find func(string) (string, error)) string {
	c.mu.RLock()
	name, ok := (*m)[id]
	c.mu.RUnlock()
	if ok {
		return name
	}
	name, err := find(strconv.FormatUint(uint64(id), 10))
	if err != nil {
		name = ""
	}
	c.mu.Lock()
	if *m == nil {
		*m = map[uint32]string{}
	}
	(*m)[id] = name
	c.mu.Unlock()
	return name
}
