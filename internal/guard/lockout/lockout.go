// Package lockout denies a locked-out user's access to protected trees
// and stops its processes.
//
// A Lockout holds one fanotify group of class FAN_CLASS_CONTENT. While at
// least one uid is locked, it marks each filesystem holding a root for
// FAN_OPEN_PERM (files and directories), so every open on those
// filesystems waits for Run's answer; with nobody locked it holds no
// mark and costs nothing. Run resolves the opened path from the event's
// descriptor and allows at once anything outside the roots; under them
// it reads the opening thread's credentials (through a pidfd, or /proc
// before Linux 6.13) and denies (EPERM) when its filesystem, effective
// or real uid is locked.
//
// What it cannot do, because the kernel has no permission event for it:
// deny unlink, rename, mkdir, link, truncate(2) by path, chmod or
// utimes; a file created with O_CREAT exists (empty) even when its open
// is denied; descriptors opened before the lock stay usable; recent
// kernels (6.18 here) send no permission event for FIFOs and device
// nodes. Stop and StopUser are the answer to what is already open or
// running. Opens through another bind mount of the same tree are not
// under the roots' paths and are allowed; so are opens by threads in
// another pid namespace (no pid) and by kernel NFS server threads, whose
// borrowed credentials the kernel does not show.
//
// While the marks are on, the kernel itself denies an open on a marked
// filesystem when it cannot open the file for Run (this process out of
// descriptors, say), and every such open waits while Run is not reading:
// Run must not be starved, and nothing it calls may open a file there.
package lockout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/custodyhq/custody/internal/fanotify"
)

var (
	// ErrRoot is returned for uid 0: root cannot be locked out, and its
	// processes are not stopped.
	ErrRoot = errors.New("root (uid 0) cannot be locked out")
	// ErrClosed is returned by Lock once Run has returned or Close was
	// called.
	ErrClosed = errors.New("lockout is closed")
	// ErrUnavailable is wrapped by New's error when this process may not
	// use fanotify permission events (it needs CAP_SYS_ADMIN and a kernel
	// with CONFIG_FANOTIFY_ACCESS_PERMISSIONS).
	ErrUnavailable = errors.New("fanotify permission events unavailable (run as root on a kernel built with " +
		"CONFIG_FANOTIFY_ACCESS_PERMISSIONS)")
)

// permMask is what the marks ask for. FAN_OPEN_PERM is also sent for the
// open of a program by execve, so FAN_OPEN_EXEC_PERM would only double
// the events of every exec (see TestLockDeniesExec).
const permMask = unix.FAN_OPEN_PERM | unix.FAN_ONDIR

// readBufSize holds about 2,700 events (24 bytes each) per read.
const readBufSize = 64 << 10

// Denial is one open that was denied.
type Denial struct {
	Time time.Time
	UID  uint32 // the locked uid that matched
	PID  int    // the process (thread group) that tried
	Exe  string // its executable, "" when unknown
	Path string // what it tried to open; "" when that could not be read

	// Suppressed counts the denials of the same uid and path since the
	// previous Denial reported for them, not reported on their own.
	Suppressed int64
}

// Options configures New.
type Options struct {
	// Logger receives what is worth knowing but not an error; nil
	// discards it. Run logs while opens wait for it: the handler must
	// not open files.
	Logger *slog.Logger
	// OnDenied, when set, is told of denials: at most one per uid and
	// path every ReportEvery (10s when zero), the others counted in the
	// next one's Suppressed. It is called from a goroutine Run owns, one
	// call at a time, with no lock held. It must not block: while it
	// runs, denials queue in a buffer of 1,024, and those that find it
	// full are dropped (counted by Dropped).
	OnDenied func(Denial)
	// ReportEvery is the least time between two Denials of one uid and
	// path given to OnDenied.
	ReportEvery time.Duration
}

// Lockout denies opens under its roots to locked uids. Lock, Release,
// Locked, Denied and Dropped may be called from any goroutine.
type Lockout struct {
	group *fanotify.Group
	fd    int // group's descriptor, for marks and replies
	roots []root
	marks []string // one path on each filesystem holding a root
	self  int
	log   *slog.Logger

	onDenied    func(Denial)
	reportEvery time.Duration

	locked  atomic.Pointer[[]uint32] // sorted; read without a lock by Run
	denied  atomic.Int64
	dropped atomic.Int64

	mu      sync.Mutex // guards the fields below, and marking
	running bool
	closed  bool
	marked  bool
	cancel  context.CancelFunc
}

// New returns a Lockout for roots (absolute directories). Nobody is
// locked yet and no mark is set. The caller must Run it or Close it.
func New(roots []string, opts Options) (*Lockout, error) {
	if len(roots) == 0 {
		return nil, errors.New("lockout: no roots to protect")
	}
	rs, err := resolveRoots(roots, true)
	if err != nil {
		return nil, fmt.Errorf("lockout: %w", err)
	}
	var marks []string
	devs := make(map[uint64]bool)
	for _, r := range rs {
		var st unix.Stat_t
		if err := unix.Stat(r.real, &st); err != nil {
			return nil, fmt.Errorf("lockout: root %s: %w", r.given, err)
		}
		// Run reads /proc to answer; a mark there would wait on itself.
		var fs unix.Statfs_t
		if err := unix.Statfs(r.real, &fs); err == nil && fs.Type == unix.PROC_SUPER_MAGIC {
			return nil, fmt.Errorf("lockout: root %s is on /proc", r.given)
		}
		if !devs[st.Dev] {
			devs[st.Dev] = true
			marks = append(marks, r.real)
		}
	}
	// O_NONBLOCK: the kernel opens each event's file for us, and opening
	// a FIFO for reading would otherwise wait for a writer, the very
	// process waiting for our answer.
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_CONTENT|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK|unix.FAN_REPORT_TID,
		unix.O_RDONLY|unix.O_LARGEFILE|unix.O_CLOEXEC|unix.O_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("%w: fanotify_init: %w", ErrUnavailable, err)
	}
	group, err := fanotify.Open(fd)
	if err != nil {
		return nil, fmt.Errorf("lockout: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	every := opts.ReportEvery
	if every <= 0 {
		every = 10 * time.Second
	}
	l := &Lockout{group: group, fd: fd, roots: rs, marks: marks, self: os.Getpid(), log: log,
		onDenied: opts.OnDenied, reportEvery: every}
	l.locked.Store(new([]uint32))
	return l, nil
}

// Lock denies, from now on, opens under the roots by threads whose
// filesystem, effective or real uid is uid. Before Run starts, it takes
// effect when Run does. It refuses uid 0 (ErrRoot).
func (l *Lockout) Lock(uid uint32) error {
	if uid == 0 {
		return fmt.Errorf("lockout: %w", ErrRoot)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return fmt.Errorf("lockout: lock uid %d: %w", uid, ErrClosed)
	}
	old := *l.locked.Load()
	i, found := slices.BinarySearch(old, uid)
	if found {
		return nil
	}
	l.locked.Store(new(slices.Insert(slices.Clone(old), i, uid)))
	if l.running && !l.marked {
		if err := l.mark(); err != nil {
			l.locked.Store(&old)
			return fmt.Errorf("lockout: lock uid %d: %w", uid, err)
		}
	}
	return nil
}

// Release ends the lockout of uid; when nobody is left locked, the marks
// are removed.
func (l *Lockout) Release(uid uint32) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	old := *l.locked.Load()
	i, found := slices.BinarySearch(old, uid)
	if !found {
		return nil
	}
	now := slices.Delete(slices.Clone(old), i, i+1)
	l.locked.Store(&now)
	if len(now) == 0 && l.marked {
		if err := l.unmark(); err != nil {
			return fmt.Errorf("lockout: release uid %d: %w", uid, err)
		}
	}
	return nil
}

// Locked returns the locked uids, ascending.
func (l *Lockout) Locked() []uint32 { return slices.Clone(*l.locked.Load()) }

// Denied returns how many opens were denied so far.
func (l *Lockout) Denied() int64 { return l.denied.Load() }

// Dropped returns how many denials were not given to OnDenied because its
// buffer was full.
func (l *Lockout) Dropped() int64 { return l.dropped.Load() }

// mark adds the permission marks; l.mu is held.
func (l *Lockout) mark() error {
	for _, p := range l.marks {
		err := unix.FanotifyMark(l.fd, unix.FAN_MARK_ADD|unix.FAN_MARK_FILESYSTEM, permMask, unix.AT_FDCWD, p)
		if err != nil {
			l.unmark()
			return fmt.Errorf("mark the filesystem of %s: %w", p, err)
		}
	}
	l.marked = true
	l.log.Info("lockout: permission marks added", "filesystems", len(l.marks))
	return nil
}

// unmark removes every mark; l.mu is held. Events already queued are
// still answered by Run.
func (l *Lockout) unmark() error {
	l.marked = false
	if err := unix.FanotifyMark(l.fd, unix.FAN_MARK_FLUSH|unix.FAN_MARK_FILESYSTEM, 0, unix.AT_FDCWD, ""); err != nil {
		return fmt.Errorf("remove the marks: %w", err)
	}
	l.log.Info("lockout: permission marks removed")
	return nil
}

// Close stops Run if it is running (Run then closes on return) or else
// closes the group at once; the kernel allows every open still waiting.
// It does not wait for Run to return.
func (l *Lockout) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.running {
		l.cancel()
		return nil
	}
	return l.closeLocked()
}

func (l *Lockout) closeLocked() error {
	if l.closed {
		return nil
	}
	l.closed = true
	l.marked = false
	return l.group.Close()
}

// Run answers permission events until ctx is done (it returns ctx.Err())
// or reading fails, then closes the Lockout: the marks go with the group
// and the kernel allows whatever was still waiting. It can be called
// once. Denials are given to OnDenied from a goroutine Run starts and
// waits for.
func (l *Lockout) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	l.mu.Lock()
	switch {
	case l.closed:
		l.mu.Unlock()
		return fmt.Errorf("lockout: run: %w", ErrClosed)
	case l.running:
		l.mu.Unlock()
		return errors.New("lockout: Run called twice")
	}
	l.running, l.cancel = true, cancel
	if len(*l.locked.Load()) > 0 {
		if err := l.mark(); err != nil {
			l.running = false
			l.closeLocked()
			l.mu.Unlock()
			return fmt.Errorf("lockout: %w", err)
		}
	}
	l.mu.Unlock()

	reports := make(chan Denial, 1024)
	var wg sync.WaitGroup
	if l.onDenied != nil {
		wg.Go(func() {
			for d := range reports {
				l.onDenied(d)
			}
		})
	}
	err := l.serve(ctx, reports)
	// Close before waiting for OnDenied: it may open files on a marked
	// filesystem, which only an answering Run or a closed group lets
	// through.
	l.mu.Lock()
	l.running = false
	l.closeLocked()
	l.mu.Unlock()
	close(reports)
	wg.Wait()
	return err
}

// serve reads and answers events until ctx is done.
func (l *Lockout) serve(ctx context.Context, reports chan<- Denial) error {
	stop := context.AfterFunc(ctx, l.group.Interrupt)
	defer stop()
	a := newAnswerer(l, reports)
	buf := make([]byte, readBufSize)
	for {
		n, err := l.read(ctx, buf)
		if err != nil {
			return err
		}
		if err := a.answer(buf[:n]); err != nil {
			return err
		}
	}
}

// read reads what the group holds, waiting while it holds nothing, until
// ctx is done. Errors the kernel met opening an event's file (it denied
// that open itself) are logged and read past.
func (l *Lockout) read(ctx context.Context, buf []byte) (int, error) {
	var lastWarn time.Time
	for {
		n, err := l.group.Read(ctx, buf)
		if err == nil || ctx.Err() != nil {
			return n, err
		}
		switch errno, ok := err.(unix.Errno); {
		case !ok, errno == unix.EBADF, errno == unix.EINVAL, errno == unix.EFAULT:
			return 0, fmt.Errorf("lockout: read: %w", err)
		}
		if time.Since(lastWarn) > time.Minute {
			lastWarn = time.Now()
			l.log.Warn("lockout: the kernel could not open a file for an event and denied that open", "err", err)
		}
	}
}
