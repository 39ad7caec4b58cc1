// Package fanotify reads a fanotify group the way both the watcher and
// the lockout need: from a non-blocking descriptor waited on in poll(2),
// not through the Go runtime's poller, with an eventfd that ends the wait.
//
// While events flow, the reader is not waiting on the group, so the kernel
// queues each event without waking anyone: a waiter woken per event cost
// the writing process about a fifth of its time (perf, tar into tmpfs:
// __wake_up under path_openat). And a permission group must be answered
// by a reader that never blocks on the runtime's behalf.
package fanotify

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"golang.org/x/sys/unix"
)

// Group is an open fanotify group. Read is for one goroutine; Interrupt
// and Close may be called from any.
type Group struct {
	fd   int
	wake int // an eventfd that ends a wait in poll

	mu     sync.Mutex // guards the descriptors against a late Interrupt
	closed bool
}

// Open takes fd, a fanotify group made with FAN_NONBLOCK, and returns it
// as a Group. On error fd is closed.
func Open(fd int) (*Group, error) {
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	return &Group{fd: fd, wake: wake}, nil
}

// FD is the group's descriptor, for marks and permission replies.
func (g *Group) FD() int { return g.fd }

// Read reads what the group holds into buf, waiting in poll(2) while it
// holds nothing, until ctx is done (give Interrupt to context.AfterFunc
// so that the wait ends with ctx). A read that failed other than by
// having nothing to read returns the kernel's unix.Errno itself, not
// wrapped, so that the caller can tell which errors it reads past; any
// other failure (poll, an empty read) is another error.
func (g *Group) Read(ctx context.Context, buf []byte) (int, error) {
	fds := []unix.PollFd{{Fd: int32(g.fd), Events: unix.POLLIN}, {Fd: int32(g.wake), Events: unix.POLLIN}}
	for {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		n, err := unix.Read(g.fd, buf)
		switch {
		case err == nil && n > 0:
			return n, nil
		case err == nil:
			return 0, io.ErrUnexpectedEOF
		case errors.Is(err, unix.EINTR):
			continue
		case !errors.Is(err, unix.EAGAIN):
			return 0, err
		}
		// Interrupt writes to wake, so this returns even if ctx ended
		// just after the check above.
		if _, err := unix.Poll(fds, -1); err != nil && !errors.Is(err, unix.EINTR) {
			return 0, fmt.Errorf("poll: %w", err)
		}
	}
}

// Interrupt wakes a Read waiting in poll. After Close it does nothing: it
// never writes to the eventfd's number once closed (it may name another
// file by then).
func (g *Group) Interrupt() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return
	}
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	unix.Write(g.wake, one[:])
}

// Close closes the group (its marks go with it) and the eventfd; it
// reports the group's close error. Closing twice does nothing.
func (g *Group) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	g.closed = true
	err := unix.Close(g.fd)
	unix.Close(g.wake)
	return err
}
