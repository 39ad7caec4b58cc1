// Package mem is an in-memory backend.Backend for unit tests, with a
// settable clock and a hook that injects faults.
package mem

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/custodyhq/custody/internal/backend"
)

// Op names an operation for the Fail hook.
type Op string

// The operations Fail can refuse.
const (
	OpPut      Op = "put"
	OpGet      Op = "get"
	OpGetRange Op = "getrange"
	OpStat     Op = "stat"
	OpList     Op = "list"
	OpDelete   Op = "delete"
)

// Mem keeps objects in a map. It follows the same rules as the real
// backends (write-once, validated handles, ErrNotFound), so code tested on it
// behaves the same on disk. Set the exported fields before sharing a Mem
// between goroutines.
type Mem struct {
	// Now is the store's clock, stamped as ModTime on Put. Tests move it to
	// exercise retention and two-phase deletion without sleeping.
	Now func() time.Time

	// Fail, if set, is called after validation at the start of every
	// operation (with Handle{Kind: kind} for List); a non-nil result fails the
	// operation with that error and leaves the store unchanged. It may keep
	// its own state (say, fail the third Put) but must be safe for concurrent use.
	Fail func(op Op, h backend.Handle) error

	mu      sync.Mutex
	objects map[backend.Handle]object
	closed  bool
}

type object struct {
	data    []byte
	modTime time.Time
}

var _ backend.Backend = (*Mem)(nil)

// New returns an empty store on the wall clock.
func New() *Mem {
	return &Mem{Now: time.Now, objects: make(map[backend.Handle]object)}
}

// Location names the store in messages.
func (m *Mem) Location() string { return fmt.Sprintf("mem:%p", m) }

// Close makes every later call fail, as a closed real backend would.
func (m *Mem) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}

// begin runs the checks every operation starts with, in the order the real
// backends do: cancellation, handle, then the injected fault.
func (m *Mem) begin(ctx context.Context, op Op, h backend.Handle) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %s: %w", op, h, err)
	}
	if op == OpList {
		if err := backend.ValidateKind(h.Kind); err != nil {
			return fmt.Errorf("%s %s: %w", op, h, err)
		}
	} else if err := h.Validate(); err != nil {
		return fmt.Errorf("%s %s: %w", op, h, err)
	}
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return fmt.Errorf("%s %s: the in-memory backend is closed", op, h)
	}
	if m.Fail != nil {
		if err := m.Fail(op, h); err != nil {
			return fmt.Errorf("%s %s: %w", op, h, err)
		}
	}
	return nil
}

// Put stores a copy of data, so the caller may reuse its buffer.
func (m *Mem) Put(ctx context.Context, h backend.Handle, data []byte) error {
	if err := m.begin(ctx, OpPut, h); err != nil {
		return err
	}
	obj := object{data: append([]byte{}, data...), modTime: m.Now()}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.objects[h]; ok {
		return fmt.Errorf("put %s: %w", h, backend.ErrExists)
	}
	m.objects[h] = obj
	return nil
}

func (m *Mem) lookup(op Op, h backend.Handle) (object, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	obj, ok := m.objects[h]
	if !ok {
		return object{}, fmt.Errorf("%s %s: %w", op, h, backend.ErrNotFound)
	}
	return obj, nil
}

// Get returns a copy of the object, so the caller may modify it.
func (m *Mem) Get(ctx context.Context, h backend.Handle) ([]byte, error) {
	if err := m.begin(ctx, OpGet, h); err != nil {
		return nil, err
	}
	obj, err := m.lookup(OpGet, h)
	if err != nil {
		return nil, err
	}
	return append([]byte{}, obj.data...), nil
}

// GetRange returns a copy of length bytes at offset. A range past the end is
// an error wrapping io.ErrUnexpectedEOF.
func (m *Mem) GetRange(ctx context.Context, h backend.Handle, offset, length int64) ([]byte, error) {
	if err := m.begin(ctx, OpGetRange, h); err != nil {
		return nil, err
	}
	if offset < 0 || length < 0 {
		return nil, fmt.Errorf("getrange %s: invalid range: offset %d, length %d", h, offset, length)
	}
	obj, err := m.lookup(OpGetRange, h)
	if err != nil {
		return nil, err
	}
	if size := int64(len(obj.data)); offset > size || length > size-offset {
		return nil, fmt.Errorf("getrange %s: bytes %d to %d requested, but the object has only %d: %w",
			h, offset, offset+length, size, io.ErrUnexpectedEOF)
	}
	return append([]byte{}, obj.data[offset:offset+length]...), nil
}

// Stat reports the size and the ModTime the clock gave at Put.
func (m *Mem) Stat(ctx context.Context, h backend.Handle) (backend.Info, error) {
	if err := m.begin(ctx, OpStat, h); err != nil {
		return backend.Info{}, err
	}
	obj, err := m.lookup(OpStat, h)
	if err != nil {
		return backend.Info{}, err
	}
	return backend.Info{Handle: h, Size: int64(len(obj.data)), ModTime: obj.modTime}, nil
}

// List calls fn for every object of kind that existed when List began; fn
// runs without the lock held, so it may call back into the store.
func (m *Mem) List(ctx context.Context, kind backend.Kind, fn func(backend.Info) error) error {
	if err := m.begin(ctx, OpList, backend.Handle{Kind: kind}); err != nil {
		return err
	}
	var infos []backend.Info
	m.mu.Lock()
	for h, obj := range m.objects {
		if h.Kind == kind {
			infos = append(infos, backend.Info{Handle: h, Size: int64(len(obj.data)), ModTime: obj.modTime})
		}
	}
	m.mu.Unlock()
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("list %s: %w", kind, err)
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes the object; a missing object is an error wrapping
// backend.ErrNotFound.
func (m *Mem) Delete(ctx context.Context, h backend.Handle) error {
	if err := m.begin(ctx, OpDelete, h); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.objects[h]; !ok {
		return fmt.Errorf("delete %s: %w", h, backend.ErrNotFound)
	}
	delete(m.objects, h)
	return nil
}
