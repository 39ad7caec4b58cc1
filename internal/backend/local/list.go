package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/custodyhq/custody/internal/backend"
)

// batch is how many directory entries are read at a time, so that a folder
// of a million packs is streamed rather than held whole in memory.
const batch = 1024

// List calls fn for every object of kind. Missing folders mean no objects.
// Files that cannot be objects (temporary files, stray names, sub-folders)
// are skipped. An error from fn stops the listing and is returned as is.
func (l *Local) List(ctx context.Context, kind backend.Kind, fn func(backend.Info) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %s: %w", kind, err)
	}
	if err := backend.ValidateKind(kind); err != nil {
		return fmt.Errorf("list %s: %w", kind, err)
	}
	if kind.Singleton() {
		info, err := l.Stat(ctx, backend.Handle{Kind: kind})
		if errors.Is(err, backend.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return fn(info)
	}
	if kind != backend.Packs {
		return l.listDir(ctx, kind, string(kind), "", fn)
	}
	return l.walkDir(ctx, string(kind), func(e fs.DirEntry) error {
		if !e.IsDir() || len(e.Name()) != 2 {
			return nil
		}
		return l.listDir(ctx, kind, filepath.Join(string(kind), e.Name()), e.Name(), fn)
	})
}

// listDir reports the objects of kind stored directly in rel. For packs,
// prefix is the fan-out folder's name, and a file whose name does not start
// with it is not an object (no Get could find it).
func (l *Local) listDir(ctx context.Context, kind backend.Kind, rel, prefix string, fn func(backend.Info) error) error {
	return l.walkDir(ctx, rel, func(e fs.DirEntry) error {
		h := backend.Handle{Kind: kind, Name: e.Name()}
		if !e.Type().IsRegular() || h.Validate() != nil || h.Name[:len(prefix)] != prefix {
			return nil
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // deleted while we listed
		}
		if err != nil {
			return fmt.Errorf("list %s in %s: %s%w", kind, l.dir, advice(err), err)
		}
		return fn(backend.Info{Handle: h, Size: fi.Size(), ModTime: fi.ModTime()})
	})
}

// walkDir calls visit for each entry of the folder rel, checking ctx between
// batches. A missing folder has no entries.
func (l *Local) walkDir(ctx context.Context, rel string, visit func(fs.DirEntry) error) error {
	d, err := l.root.Open(rel)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list %s: %s%w", filepath.Join(l.dir, rel), advice(err), err)
	}
	defer d.Close()
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("list %s: %w", filepath.Join(l.dir, rel), err)
		}
		entries, err := d.ReadDir(batch)
		for _, e := range entries {
			if err := visit(e); err != nil {
				return err
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("list %s: %s%w", filepath.Join(l.dir, rel), advice(err), err)
		}
	}
}

// RemoveStaleTemp deletes temporary files last written more than olderThan
// ago: what a Put interrupted by a crash or kill leaves in tmp/. They are
// never visible as objects, so this only reclaims space. olderThan must
// exceed the longest a Put can take, and the longest any process sharing the
// vault leaves a CreateTemp file unwritten (an hour is plenty); a younger
// file may belong to a write in progress, which would then fail. Files this
// Local handed out through CreateTemp and not yet put are always spared.
func (l *Local) RemoveStaleTemp(ctx context.Context, olderThan time.Duration) (removed int, err error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("remove stale temporary files: %w", err)
	}
	cutoff := time.Now().Add(-olderThan)
	err = l.walkDir(ctx, tmpDir, func(e fs.DirEntry) error {
		if !e.Type().IsRegular() || l.inUse(e.Name()) {
			return nil
		}
		fi, err := e.Info()
		if err != nil || !fi.ModTime().Before(cutoff) {
			return nil // gone already, or possibly still being written
		}
		name := filepath.Join(tmpDir, e.Name())
		if err := l.root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove stale temporary file %s: %s%w", filepath.Join(l.dir, name), advice(err), err)
		}
		removed++
		return nil
	})
	return removed, err
}

// advice explains common OS errors in plain words, with what to do next; it
// ends in ": " so callers can put the wrapped cause after it.
func advice(err error) string {
	var why string
	switch {
	case errors.Is(err, errNoSpace):
		why = "the disk is full; free some space and retry"
	case errors.Is(err, errQuota):
		why = "the disk quota is used up; free some space or raise the quota and retry"
	case errors.Is(err, errReadOnly):
		why = "the file system is mounted read-only"
	case errors.Is(err, fs.ErrPermission):
		why = "permission denied; check the owner and mode of the vault directory"
	case errors.Is(err, errIO):
		why = "the disk reported an I/O error; check its health before retrying"
	default:
		return ""
	}
	return why + ": "
}

// linkAdvice is advice for a failed link(2), which some file systems
// (FAT, some network and FUSE mounts) do not support.
func linkAdvice(err error) string {
	if errors.Is(err, errNotSupported) || errors.Is(err, os.ErrPermission) {
		return "the file system refused to create a hard link; the local backend needs hard links for atomic write-once storage, so put the vault on a file system that supports them (ext4, XFS, btrfs, ZFS, APFS, NTFS): "
	}
	return advice(err)
}
