// Package local stores a vault's objects as files in a local directory.
//
// Layout, relative to the vault directory:
//
//	custody-vault          the Marker
//	config                 the Config
//	data/<ab>/<abcdef...>  Packs, fanned out by the first two characters of the name
//	<kind>/<name>          every other kind
//	tmp/<random>           objects being written; never visible as objects
//
// Every file operation goes through an [os.Root] opened on the vault
// directory, so no name, symlink or concurrent rename can make the backend
// read or write outside it.
package local

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/custodyhq/custody/internal/backend"
)

const (
	tmpDir   = "tmp"
	fileMode = 0o400 // stored objects are write-once; the mode says so to humans and tools too
	dirMode  = 0o700 // vault contents are private to the owner
)

// Local is a backend.Backend on a local directory. It is safe for concurrent use.
type Local struct {
	dir  string // absolute, for messages
	root *os.Root

	// writeData fills a temporary file. Tests replace it to simulate a disk
	// that fills up halfway through a write.
	writeData func(f *os.File, data []byte) error

	mu    sync.Mutex
	temps map[*os.File]string // files handed out by CreateTemp -> name in tmp/
}

var (
	_ backend.Backend    = (*Local)(nil)
	_ backend.FilePutter = (*Local)(nil)
)

// New opens the existing vault directory dir. It does not check that dir
// holds a vault; the vault package reads the Marker for that.
func New(dir string) (*Local, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open vault directory %s: %w", dir, err)
	}
	fi, err := os.Stat(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("open vault directory %s: it does not exist; check the path or create the vault first: %w", abs, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open vault directory %s: %s%w", abs, advice(err), err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("open vault directory %s: it is not a directory", abs)
	}
	root, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("open vault directory %s: %s%w", abs, advice(err), err)
	}
	return &Local{dir: abs, root: root, writeData: writeAll, temps: make(map[*os.File]string)}, nil
}

// Create makes dir (and its parents) if missing, then opens it like New.
func Create(dir string) (*Local, error) {
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return nil, fmt.Errorf("create vault directory %s: %s%w", dir, advice(err), err)
	}
	return New(dir)
}

func writeAll(f *os.File, data []byte) error {
	_, err := f.Write(data)
	return err
}

// Location returns the absolute path of the vault directory.
func (l *Local) Location() string { return l.dir }

// Close releases the directory handle; later calls fail.
func (l *Local) Close() error { return l.root.Close() }

// objectPath is h's file name relative to the root; h must be valid.
func objectPath(h backend.Handle) string {
	switch h.Kind {
	case backend.Marker:
		return "custody-vault"
	case backend.Config:
		return "config"
	case backend.Packs:
		return filepath.Join(string(h.Kind), h.Name[:2], h.Name)
	}
	return filepath.Join(string(h.Kind), h.Name)
}

func begin(ctx context.Context, h backend.Handle) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return h.Validate()
}

// Put stores data under h: it writes and fsyncs the bytes in tmp/, then
// publishes the file under its final name.
func (l *Local) Put(ctx context.Context, h backend.Handle, data []byte) error {
	if err := begin(ctx, h); err != nil {
		return fmt.Errorf("put %s: %w", h, err)
	}
	tmp, err := l.writeTemp(data)
	if err != nil {
		return fmt.Errorf("store %s in %s: %w", h, l.dir, err)
	}
	// After a successful link this drops the now redundant temporary name;
	// after a failure it drops the whole file. If it fails in turn, the file
	// is harmless and RemoveStaleTemp collects it.
	defer l.root.Remove(tmp)
	return l.publish(h, tmp)
}

// publish links the fsynced temporary file tmp into place as h. link(2),
// unlike rename(2), fails when the target exists, so of several concurrent
// writers exactly one wins and stored bytes are never replaced, with no lock
// and no check-then-act race.
func (l *Local) publish(h backend.Handle, tmp string) error {
	name := objectPath(h)
	if err := l.ensureDir(filepath.Dir(name)); err != nil {
		return fmt.Errorf("store %s in %s: %w", h, l.dir, err)
	}
	if err := l.root.Link(tmp, name); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("store %s in %s: %w", h, l.dir, backend.ErrExists)
		}
		return fmt.Errorf("store %s in %s: %s%w", h, l.dir, linkAdvice(err), err)
	}
	// The object exists only once its directory entry is on disk.
	if err := l.syncDir(filepath.Dir(name)); err != nil {
		return fmt.Errorf("store %s in %s: %w", h, l.dir, err)
	}
	return nil
}

// writeTemp writes data to a new file in tmp/ and fsyncs it, so that the
// link that publishes it can never expose a truncated object after a crash.
// On failure it removes the file and returns "".
func (l *Local) writeTemp(data []byte) (string, error) {
	name, f, err := l.createTemp()
	if err != nil {
		return "", err
	}
	err = l.writeData(f, data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = l.root.Remove(name) // best effort; the write error is the one to report
		return "", fmt.Errorf("writing the data failed: %s%w", advice(err), err)
	}
	return name, nil
}

// createTemp creates a new, empty file in tmp/ and returns its name
// relative to the root.
func (l *Local) createTemp() (string, *os.File, error) {
	if err := l.ensureDir(tmpDir); err != nil {
		return "", nil, err
	}
	name := filepath.Join(tmpDir, rand.Text())
	// Created read-only: the mode applies to the name linked later, and the
	// open descriptor may write (and read) regardless.
	f, err := l.root.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, fileMode)
	if err != nil {
		return "", nil, fmt.Errorf("create a temporary file in %s: %s%w", filepath.Join(l.dir, tmpDir), advice(err), err)
	}
	return name, f, nil
}

// ensureDir creates rel and its missing parents, and syncs the directories
// above what it created: a crash must not lose a folder that already holds an
// object we reported as stored.
func (l *Local) ensureDir(rel string) error {
	if fi, err := l.root.Stat(rel); err == nil && fi.IsDir() {
		return nil
	}
	if err := l.root.MkdirAll(rel, dirMode); err != nil {
		return fmt.Errorf("create folder %s: %s%w", filepath.Join(l.dir, rel), advice(err), err)
	}
	for d := filepath.Dir(rel); ; d = filepath.Dir(d) {
		if err := l.syncDir(d); err != nil {
			return err
		}
		if d == "." {
			return nil
		}
	}
}

// syncDir fsyncs a directory so that entries added or removed in it survive a crash.
func (l *Local) syncDir(rel string) error {
	if runtime.GOOS == "windows" {
		return nil // directories cannot be fsynced there; NTFS journals metadata itself
	}
	d, err := l.root.Open(rel)
	if err == nil {
		err = d.Sync()
		if cerr := d.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("sync folder %s: %s%w", filepath.Join(l.dir, rel), advice(err), err)
	}
	return nil
}

// Get returns the whole object.
func (l *Local) Get(ctx context.Context, h backend.Handle) ([]byte, error) {
	if err := begin(ctx, h); err != nil {
		return nil, fmt.Errorf("get %s: %w", h, err)
	}
	data, err := l.root.ReadFile(objectPath(h))
	if err != nil {
		return nil, l.opError("read", h, err)
	}
	return data, nil
}

// GetRange returns length bytes at offset. A range past the end of the
// object is an error wrapping io.ErrUnexpectedEOF.
func (l *Local) GetRange(ctx context.Context, h backend.Handle, offset, length int64) ([]byte, error) {
	if offset < 0 || length < 0 {
		return nil, fmt.Errorf("read %s: invalid range: offset %d, length %d", h, offset, length)
	}
	f, err := l.openRange(ctx, h, offset, length)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, length) // after openRange checked the size: a corrupt length cannot exhaust memory
	if err := l.readAt(f, h, buf, offset); err != nil {
		return nil, err
	}
	return buf, nil
}

// ReadRange is GetRange into the caller's buffer.
func (l *Local) ReadRange(ctx context.Context, h backend.Handle, offset int64, dst []byte) error {
	if offset < 0 {
		return fmt.Errorf("read %s: invalid range: offset %d", h, offset)
	}
	f, err := l.openRange(ctx, h, offset, int64(len(dst)))
	if err != nil {
		return err
	}
	defer f.Close()
	return l.readAt(f, h, dst, offset)
}

// Open returns h's file, open for reading. It implements backend.Opener.
func (l *Local) Open(ctx context.Context, h backend.Handle) (*os.File, error) {
	return l.openRange(ctx, h, 0, 0)
}

// openRange opens h and checks that it holds length bytes at offset.
func (l *Local) openRange(ctx context.Context, h backend.Handle, offset, length int64) (*os.File, error) {
	if err := begin(ctx, h); err != nil {
		return nil, fmt.Errorf("get %s: %w", h, err)
	}
	f, err := l.root.Open(objectPath(h))
	if err != nil {
		return nil, l.opError("read", h, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, l.opError("read", h, err)
	}
	if size := fi.Size(); offset > size || length > size-offset {
		f.Close()
		return nil, fmt.Errorf("read %s in %s: bytes %d to %d requested, but the object has only %d: %w",
			h, l.dir, offset, offset+length, size, io.ErrUnexpectedEOF)
	}
	return f, nil
}

func (l *Local) readAt(f *os.File, h backend.Handle, buf []byte, offset int64) error {
	if _, err := f.ReadAt(buf, offset); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF // the file shrank under us; it should never
		}
		return l.opError("read", h, err)
	}
	return nil
}

// Stat reports the object's size and the file's modification time.
func (l *Local) Stat(ctx context.Context, h backend.Handle) (backend.Info, error) {
	if err := begin(ctx, h); err != nil {
		return backend.Info{}, fmt.Errorf("stat %s: %w", h, err)
	}
	fi, err := l.root.Stat(objectPath(h))
	if err != nil {
		return backend.Info{}, l.opError("stat", h, err)
	}
	if !fi.Mode().IsRegular() {
		return backend.Info{}, fmt.Errorf("stat %s in %s: %s is not a regular file; something other than custody wrote it",
			h, l.dir, filepath.Join(l.dir, objectPath(h)))
	}
	return backend.Info{Handle: h, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// Delete removes the object; a missing object is an error wrapping
// backend.ErrNotFound.
func (l *Local) Delete(ctx context.Context, h backend.Handle) error {
	if err := begin(ctx, h); err != nil {
		return fmt.Errorf("delete %s: %w", h, err)
	}
	name := objectPath(h)
	// Root.Remove would also remove an empty directory; objects are files.
	fi, err := l.root.Lstat(name)
	if err == nil && fi.IsDir() {
		err = fs.ErrNotExist
	}
	if err == nil {
		err = l.root.Remove(name)
	}
	if err != nil {
		return l.opError("delete", h, err)
	}
	// Prune records a pack as gone once Delete returns; make that true after a crash.
	if err := l.syncDir(filepath.Dir(name)); err != nil {
		return fmt.Errorf("delete %s in %s: %w", h, l.dir, err)
	}
	return nil
}

// opError wraps err, turning a missing file into backend.ErrNotFound.
func (l *Local) opError(op string, h backend.Handle, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s %s in %s: %w", op, h, l.dir, backend.ErrNotFound)
	}
	return fmt.Errorf("%s %s in %s: %s%w", op, h, l.dir, advice(err), err)
}
