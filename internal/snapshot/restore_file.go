package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/custodyhq/custody/internal/vault"
)

// devIno identifies an inode of the archived filesystem.
type devIno struct{ dev, ino uint64 }

// linkGroup is the hard links of one archived inode met in this restore:
// the first is written, the others are linked to it once it is in place.
type linkGroup struct {
	rel  string        // the first link, relative to the target
	path string        // the first link, relative to the version root
	done chan struct{} // closed when the first is in place or has failed
	ok   bool          // set before done is closed
}

func (r *restorer) doJob(ctx context.Context, j fileJob) error {
	var err error
	if j.link {
		err = r.linkFile(ctx, j)
	} else {
		err = r.writeFile(ctx, j)
		if j.group != nil {
			j.group.ok = err == nil
			close(j.group.done)
		}
	}
	if err != nil {
		return err
	}
	return r.release(j.d)
}

// writeFile writes a regular file under a temporary name, applies its
// metadata and renames it into place, so the final name only ever holds a
// complete file: a resumed restore can trust what it finds there.
func (r *restorer) writeFile(ctx context.Context, j fileJob) error {
	d, n := j.d, j.n
	if r.existing {
		kept, err := r.clearFileName(d, j.name, n)
		if err != nil {
			return fmt.Errorf("restore %q: %w", j.path, err)
		}
		if kept {
			r.count(func(res *RestoreResult) { res.Skipped++ })
			r.progress(j.path, 1, n.Size)
			return nil
		}
	}
	tmp := tempName(j.name)
	f, err := createTemp(d.root, tmp)
	if err != nil {
		return fmt.Errorf("restore %q: %w", j.path, err)
	}
	err = r.fillFile(ctx, f, j)
	if err == nil {
		err = r.applyMeta(j.path, f, n)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.UtimesNanoAt(d.fd, tmp, timespecs(n.ModTime), unix.AT_SYMLINK_NOFOLLOW)
	}
	if err == nil {
		err = d.root.Rename(tmp, j.name)
	}
	if err != nil {
		d.root.Remove(tmp)
		return fmt.Errorf("restore %q: %w", j.path, err)
	}
	r.progress(j.path, 1, 0)
	return nil
}

// clearFileName makes way for the file n at name in a target that was not
// empty. It reports whether what is there is already that file: a regular
// file of the same size, mtime, mode (and owner, for root) is trusted to
// be complete, because restored files only get their mtime once written.
func (r *restorer) clearFileName(d *dirState, name string, n *Node) (kept bool, err error) {
	fi, err := d.root.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	case fi.Mode().IsRegular():
		st, ok := fi.Sys().(*syscall.Stat_t)
		return ok && uint64(st.Size) == n.Size && st.Mtim.Nano() == n.ModTime && st.Mode&0o7777 == n.Mode &&
			(!r.asRoot || st.Uid == n.UID && st.Gid == n.GID), nil
	case fi.IsDir():
		return false, d.root.RemoveAll(name)
	}
	return false, nil // a symlink or special file: the rename replaces it
}

// createTemp creates the temporary file name in root. O_EXCL never follows
// a symlink; whatever holds the name (a leftover of an interrupted run) is
// removed first.
func createTemp(root *os.Root, name string) (*os.File, error) {
	const flags = os.O_WRONLY | os.O_CREATE | os.O_EXCL
	f, err := root.OpenFile(name, flags, 0o600)
	if errors.Is(err, fs.ErrExist) {
		if err := root.Remove(name); err != nil {
			return nil, err
		}
		f, err = root.OpenFile(name, flags, 0o600)
	}
	return f, err
}

// tempName is where a file is written before it is renamed into place.
// Names too long for the suffix are hashed.
func tempName(name string) string {
	if t := "." + name + ".custody-tmp"; len(t) <= 255 {
		return t
	}
	h := fnv.New64a()
	h.Write([]byte(name))
	return fmt.Sprintf(".custody-tmp-%016x", h.Sum64())
}

// fillFile writes the file's chunks in order. All-zero chunks are skipped,
// leaving holes, so that sparse files stay sparse.
func (r *restorer) fillFile(ctx context.Context, f *os.File, j fileJob) error {
	var off int64
	hole := false
	err := r.loadInOrder(ctx, j.n.Content, func(b []byte) error {
		if allZero(b) {
			hole = true
		} else {
			if _, err := f.WriteAt(b, off); err != nil {
				return err
			}
			hole = false
		}
		off += int64(len(b))
		r.progress(j.path, 0, uint64(len(b)))
		return nil
	})
	if err != nil {
		return err
	}
	if uint64(off) != j.n.Size {
		return fmt.Errorf("content is %d bytes, the tree says %d: the version is damaged", off, j.n.Size)
	}
	if hole {
		return f.Truncate(off)
	}
	return nil
}

// loadInOrder calls fn with the plaintext of each blob, in order, while
// loading the next ones ahead: decryption and verification are what a
// restore spends its CPU on, and one big file should use every core.
//
// Each blob holds one of the restore's load tokens from the start of its
// load until fn has written it, which bounds the memory of all files'
// read-ahead together. Only the blob fn needs next is waited for; ahead
// of it, loads start only when a token is free at once, so a file never
// waits for a token while holding one, and files cannot starve each other.
func (r *restorer) loadInOrder(ctx context.Context, ids []vault.ID, fn func([]byte) error) error {
	if len(ids) == 1 {
		if err := r.acquire(ctx); err != nil {
			return err
		}
		defer r.releaseLoad()
		b, err := r.load(ctx, ids[0])
		if err != nil {
			return err
		}
		defer r.recycle(b)
		return fn(b)
	}
	type slot struct {
		done chan struct{}
		b    []byte
		err  error
	}
	slots := make([]slot, min(r.readAhead, len(ids)))
	held := 0
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
		for ; held > 0; held-- {
			r.releaseLoad()
		}
	}()
	start := func(i int) {
		held++
		s := &slots[i%len(slots)]
		done := make(chan struct{})
		s.done = done
		wg.Go(func() {
			defer close(done)
			s.b, s.err = r.load(ctx, ids[i])
		})
	}
	next := 0 // the first blob not started
	for i := range ids {
		if next == i {
			if err := r.acquire(ctx); err != nil {
				return err
			}
			start(i)
			next++
		}
		for next < len(ids) && next-i < len(slots) && r.tryAcquire() {
			start(next)
			next++
		}
		s := &slots[i%len(slots)]
		<-s.done
		err := s.err
		if err == nil {
			err = fn(s.b)
			r.recycle(s.b)
		}
		s.b = nil
		r.releaseLoad()
		held--
		if err != nil {
			return err
		}
	}
	return nil
}

func (r *restorer) acquire(ctx context.Context) error {
	select {
	case r.loads <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *restorer) tryAcquire() bool {
	select {
	case r.loads <- struct{}{}:
		return true
	default:
		return false
	}
}

func (r *restorer) releaseLoad() { <-r.loads }

// load loads one blob; the caller holds a load token for it.
// blobIntoLoader is implemented by vaults that can load into a caller's
// buffer; the restore then reuses its buffers instead of allocating one
// per chunk, which at GiB/s is most of the garbage collector's work.
type blobIntoLoader interface {
	LoadBlobInto(ctx context.Context, id vault.ID, buf []byte) ([]byte, error)
}

func (r *restorer) load(ctx context.Context, id vault.ID) ([]byte, error) {
	var b []byte
	var err error
	if l, ok := r.blobs.(blobIntoLoader); ok {
		var buf []byte
		select {
		case buf = <-r.bufs:
		default:
		}
		b, err = l.LoadBlobInto(ctx, id, buf)
	} else {
		b, err = r.blobs.LoadBlob(ctx, id)
	}
	if err != nil {
		return nil, fmt.Errorf("load blob %s: %w", id.Short(), err)
	}
	return b, nil
}

// recycle returns a written blob's buffer for another load.
func (r *restorer) recycle(b []byte) {
	if cap(b) == 0 {
		return
	}
	select {
	case r.bufs <- b[:0]:
	default:
	}
}

var zeroPage [64 << 10]byte

func allZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeroPage))
		if !bytes.Equal(b[:n], zeroPage[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// linkFile makes j a hard link to the first file of its group once that
// one is in place.
func (r *restorer) linkFile(ctx context.Context, j fileJob) error {
	g := j.group
	select {
	case <-g.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if !g.ok {
		return fmt.Errorf("restore %q: its hard link %q could not be restored", j.path, g.path)
	}
	if r.existing {
		fi, err := j.d.root.Lstat(j.name)
		switch {
		case err == nil:
			if first, err := r.top.Lstat(g.rel); err == nil && os.SameFile(fi, first) {
				r.count(func(res *RestoreResult) { res.Hardlinks++ })
				return nil
			}
			if fi.IsDir() {
				err = j.d.root.RemoveAll(j.name)
			} else {
				err = j.d.root.Remove(j.name)
			}
			if err != nil {
				return fmt.Errorf("restore %q: %w", j.path, err)
			}
		case !errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("restore %q: %w", j.path, err)
		}
	}
	// Through the top root: both paths are resolved a name at a time
	// inside the target, however long they are.
	if err := r.top.Link(g.rel, childPath(j.d.rel, j.name)); err != nil {
		return fmt.Errorf("restore %q: %w", j.path, err)
	}
	r.count(func(res *RestoreResult) { res.Hardlinks++ })
	return nil
}
