package snapshot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// makeSymlink creates the symlink n at name in d, replacing whatever a
// non-empty target holds there. Its target is stored as is and never
// followed: the symlink's owner, xattrs and times are set on the link
// itself.
func (r *restorer) makeSymlink(d *dirState, n *Node, name, path string) error {
	if r.existing {
		fi, err := d.root.Lstat(name)
		switch {
		case err == nil && fi.IsDir():
			err = d.root.RemoveAll(name)
		case err == nil:
			err = d.root.Remove(name)
		case errors.Is(err, fs.ErrNotExist):
			err = nil
		}
		if err != nil {
			return err
		}
	}
	if err := d.root.Symlink(string(n.RawLinkTarget()), name); err != nil {
		return err
	}
	if r.asRoot {
		if err := d.root.Lchown(name, int(n.UID), int(n.GID)); err != nil {
			return err
		}
	}
	// A symlink cannot be opened; naming it through the directory's
	// descriptor in /proc keeps the path short and inside the target.
	proc := "/proc/self/fd/" + strconv.Itoa(d.fd) + "/" + name
	err := r.setXattrs(path, n.Xattrs, func(attr string, v []byte) error { return unix.Lsetxattr(proc, attr, v, 0) })
	if err != nil {
		return err
	}
	if err := unix.UtimesNanoAt(d.fd, name, timespecs(n.ModTime), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set mtime: %w", err)
	}
	r.count(func(res *RestoreResult) { res.Symlinks++ })
	return nil
}

// applyMeta sets the owner (as root only), xattrs and mode of an open file
// or directory, in the order that keeps each step from undoing another:
// chown clears setuid bits, and a read-only mode would forbid user xattrs.
// Times are set by the caller, last.
func (r *restorer) applyMeta(path string, f *os.File, n *Node) error {
	fd := int(f.Fd())
	if r.asRoot {
		if err := unix.Fchown(fd, int(n.UID), int(n.GID)); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	if err := r.setXattrs(path, n.Xattrs, func(attr string, v []byte) error { return unix.Fsetxattr(fd, attr, v, 0) }); err != nil {
		return err
	}
	if err := unix.Fchmod(fd, n.Mode); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	return nil
}

// setXattrs sets each attribute with set. What the filesystem or the
// user's rights refuse is a warning, not a failed restore.
func (r *restorer) setXattrs(path string, xs []Xattr, set func(attr string, v []byte) error) error {
	for i := range xs {
		attr := string(xs[i].RawName())
		err := set(attr, xs[i].Value)
		switch {
		case err == nil:
		case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES), errors.Is(err, unix.ENOTSUP),
			errors.Is(err, unix.EINVAL), errors.Is(err, unix.ERANGE), errors.Is(err, unix.E2BIG),
			errors.Is(err, unix.ENOENT): // ENOENT: no /proc to name a symlink through
			r.warn(path, fmt.Errorf("xattr %q not restored: %w", attr, err))
		default:
			return fmt.Errorf("xattr %q: %w", attr, err)
		}
	}
	return nil
}

// timespecs is atime and mtime for utimensat: a restore sets atime to the
// mtime, as the version records no atime.
func timespecs(ns int64) []unix.Timespec {
	ts := unix.NsecToTimespec(ns)
	return []unix.Timespec{ts, ts}
}

func nsTime(ns int64) time.Time { return time.Unix(0, ns) }
