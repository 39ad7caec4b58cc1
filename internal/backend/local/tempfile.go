package local

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/custodyhq/custody/internal/backend"
)

// CreateTemp returns a new, empty file in tmp/ for the caller to fill and
// then hand to PutFile or DiscardTemp. Its bytes never pass through memory
// again: PutFile links the file itself into place. It implements
// backend.FilePutter.
func (l *Local) CreateTemp() (*os.File, error) {
	name, f, err := l.createTemp()
	if err != nil {
		return nil, fmt.Errorf("vault %s: %w", l.dir, err)
	}
	l.mu.Lock()
	l.temps[f] = name
	l.mu.Unlock()
	return f, nil
}

// claim forgets f as an outstanding temporary file and returns its name in
// tmp/, or false if f did not come from CreateTemp (or was claimed already).
func (l *Local) claim(f *os.File) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	name, ok := l.temps[f]
	delete(l.temps, f)
	return name, ok
}

// PutFile stores the file f, which came from CreateTemp and holds the whole
// object, as h, with the same atomic, write-once rules as Put. f is closed
// and its temporary name removed whatever happens.
func (l *Local) PutFile(ctx context.Context, h backend.Handle, f *os.File) error {
	tmp, ok := l.claim(f)
	if !ok {
		// Refuse rather than link a file we did not create: it could be
		// anything, anywhere.
		_ = f.Close()
		return fmt.Errorf("store %s in %s: the file %s was not created by this backend's CreateTemp, or was already put", h, l.dir, f.Name())
	}
	defer l.root.Remove(tmp) // as in Put: harmless if it fails
	if err := begin(ctx, h); err != nil {
		_ = f.Close()
		return fmt.Errorf("put %s: %w", h, err)
	}
	err := f.Sync() // the bytes must be on disk before the link makes them visible
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store %s in %s: writing the data failed: %s%w", h, l.dir, advice(err), err)
	}
	return l.publish(h, tmp)
}

// DiscardTemp closes and removes a file from CreateTemp that will not be put.
func (l *Local) DiscardTemp(f *os.File) {
	_ = f.Close()
	if tmp, ok := l.claim(f); ok {
		_ = l.root.Remove(tmp) // RemoveStaleTemp collects it if this fails
	}
}

// inUse reports whether the temporary file name (in tmp/) is still being
// filled through CreateTemp, so RemoveStaleTemp spares a pack that is
// merely waiting for its next blob.
func (l *Local) inUse(name string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range l.temps {
		if filepath.Base(n) == name {
			return true
		}
	}
	return false
}
