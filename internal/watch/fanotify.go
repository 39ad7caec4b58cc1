package watch

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/custodyhq/custody/internal/fanotify"
)

// ErrFanotifyUnavailable is wrapped by NewFanotify's error when this
// process may not use fanotify here; the caller can fall back to inotify.
var ErrFanotifyUnavailable = errors.New("fanotify unavailable (it needs root or CAP_SYS_ADMIN, Linux 5.17 or later, " +
	"and a filesystem that reports file handles); use the inotify backend")

// FanotifyOptions configures NewFanotify.
type FanotifyOptions struct {
	// Logger receives what is worth knowing but not an error; nil
	// discards it.
	Logger *slog.Logger
}

// fanotifyMask is what the filesystem marks ask for.
const fanotifyMask = unix.FAN_CREATE | unix.FAN_DELETE | unix.FAN_MODIFY | unix.FAN_CLOSE_WRITE |
	unix.FAN_ATTRIB | unix.FAN_RENAME | unix.FAN_ONDIR

// readBufSize holds a few thousand events per read.
const readBufSize = 256 << 10

// readPause lets events gather in the kernel between reads while they
// flow (see Run); at 200,000 events/s that is about a thousand a read,
// far below the queue's 16,384.
const readPause = 5 * time.Millisecond

// kindBits are the event bits reported one by one, in the order an event
// the kernel merged from several is split back: a create comes before
// anything else done to the name, a delete after.
var kindBits = [...]struct {
	bit  uint64
	kind Kind
}{
	{unix.FAN_CREATE, Create},
	{unix.FAN_MODIFY, Modify},
	{unix.FAN_ATTRIB, Attrib},
	{unix.FAN_CLOSE_WRITE, CloseWrite},
	{unix.FAN_DELETE, Delete},
}

// Fanotify is a Source backed by one fanotify group, in FID mode with
// directory handles and names (FAN_REPORT_DFID_NAME_TARGET) and a pidfd
// per event (FAN_REPORT_PIDFD), marking each filesystem holding a root
// (FAN_MARK_FILESYSTEM) and keeping, in user space, the events under the
// roots. The queue is bounded (no FAN_UNLIMITED_QUEUE; see queueLimit):
// when it overflows, every root gets an Overflow event and the caller
// rescans.
//
// What it reports:
//   - Paths are absolute, under the root as the caller named it, with the
//     exact bytes of the names. Time is when the event was read.
//   - A rename inside one root is one Rename with OldPath and Path. A
//     rename whose other name is outside the roots (or in another root)
//     is, as with inotify, a Create or a Delete with Detail["rename"] =
//     "unpaired"; fanotify knows the other name too, so a Create moved in
//     has OldPath set to where it came from and a Delete moved out has
//     Detail["moved_to"]. A directory moved in brings contents nobody
//     reported: the caller should scan it.
//   - The kernel merges events on the same name by the same process still
//     in its queue; a merged event is split back into one Event per kind,
//     creates first and deletes last.
//   - A root deleted or moved away (itself or with an ancestor) is, as
//     with inotify, a Delete of the root with Detail["root"] = "deleted"
//     or "moved", and a warning is logged. Unlike inotify, whose watches
//     go with the directory, Run goes on even when no root is left:
//     events are kept by path, so a directory made again at a root's path
//     or moved back there is watched again at once, as in the atomic swap
//     "mv data data.old; mv data.new data". Reappearing is reported too,
//     as the Create of the root.
//   - Principal: see attributor. A process gone before its first event is
//     read (a short-lived rm or mv, often) is unknown, and sets
//     Detail["principal"] = "unknown". Events caused by this process
//     itself (for example its own ledger writes) are dropped.
//   - Directories are known from a walk of the roots at start and from
//     the events since; one not known is looked up by its handle. When
//     that fails too, because it was deleted before its events were read,
//     a later event of the same read that removed or renamed it gives its
//     path, and the events get Detail["unresolved"] = "1". An event in a
//     directory that cannot be found at all is dropped, with a debug log.
//
// Filesystems mounted inside a root when the source starts are marked
// too; ones mounted later are not.
type Fanotify struct {
	group *fanotify.Group
	fd    int // group's descriptor
	roots rootSet
	dirs  *dirCache
	attr  *attributor
	log   *slog.Logger
	self  int32

	running   atomic.Bool
	closeOnce sync.Once
	closeErr  error
	unplaced  int // events dropped because their directory could not be found
}

// NewFanotify returns a Source watching roots (absolute directory paths)
// with fanotify. Events are queued from the moment it returns. It fails
// with an error wrapping ErrFanotifyUnavailable when the process may not
// use fanotify (not root / no CAP_SYS_ADMIN, or the kernel refuses), so
// callers can fall back to inotify. The caller must Run it or Close it.
func NewFanotify(roots []string, opts FanotifyOptions) (*Fanotify, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if len(roots) == 0 {
		return nil, errors.New("fanotify: no roots to watch")
	}
	var wr []watchedRoot
	seen := make(map[string]bool)
	for _, r := range roots {
		if !filepath.IsAbs(r) {
			return nil, fmt.Errorf("fanotify: root %q is not an absolute path", r)
		}
		given := filepath.Clean(r)
		if seen[given] {
			continue
		}
		seen[given] = true
		real, err := filepath.EvalSymlinks(given)
		if err != nil {
			return nil, fmt.Errorf("fanotify: root %s: %w", given, err)
		}
		if fi, err := os.Stat(real); err != nil {
			return nil, fmt.Errorf("fanotify: root %s: %w", given, err)
		} else if !fi.IsDir() {
			return nil, fmt.Errorf("fanotify: root %s is not a directory", given)
		}
		wr = append(wr, watchedRoot{given: given, real: real})
	}

	raiseQueueLimit(log)
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK|
		unix.FAN_REPORT_DFID_NAME_TARGET|unix.FAN_REPORT_PIDFD, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_LARGEFILE)
	if err != nil {
		return nil, fmt.Errorf("%w: fanotify_init: %w", ErrFanotifyUnavailable, err)
	}
	group, err := fanotify.Open(fd)
	if err != nil {
		return nil, fmt.Errorf("fanotify: %w", err)
	}
	f := &Fanotify{
		group: group,
		fd:    fd,
		roots: newRootSet(wr),
		attr:  newAttributor(),
		log:   log,
		self:  int32(os.Getpid()),
	}
	f.dirs = newDirCache(f.roots)
	for _, r := range f.roots {
		fsid, err := f.markFilesystem(r.real)
		if err != nil {
			f.Close()
			return nil, err
		}
		n, complete := f.dirs.prime(r.real, fsid, maxPrimed-len(f.dirs.in), f.markNested)
		if !complete {
			log.Warn("fanotify: too many directories to learn them all at start; events in ones deleted before "+
				"they are read may be dropped", "root", r.given, "learned", n)
		}
	}
	return f, nil
}

// queueLimit is the fanotify queue length the watcher asks for: the
// kernel's default, 16,384 events, overflows within a tenth of a second
// of a writer creating 100,000 files a second whenever the reader pauses
// (a collection, a database checkpoint). Each queued event holds about
// 100 bytes of kernel memory, so this bounds it near 25 MiB.
const queueLimit = 1 << 18

// maxQueuedEvents is the sysctl a new group's queue length is read from.
const maxQueuedEvents = "/proc/sys/fs/fanotify/max_queued_events"

// raiseQueueLimit raises the system's fanotify queue length to queueLimit
// when it is lower (it never lowers it), before the group is made: the
// kernel reads it then. It needs root; without, the default stays.
func raiseQueueLimit(log *slog.Logger) {
	b, err := os.ReadFile(maxQueuedEvents)
	if err != nil {
		return
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n >= queueLimit {
		return
	}
	if err := os.WriteFile(maxQueuedEvents, []byte(strconv.Itoa(queueLimit)), 0); err != nil {
		log.Info("fanotify: the kernel queue stays at its limit; bursts may overflow it (and be rescanned)", "limit", n, "err", err)
		return
	}
	log.Info("fanotify: raised the kernel queue limit", "from", n, "to", queueLimit)
}

// markFilesystem marks the filesystem holding dir, once, and keeps dir
// open to resolve that filesystem's handles. It returns the fsid.
func (f *Fanotify) markFilesystem(dir string) ([8]byte, error) {
	fsid, err := fsKey(dir)
	if err != nil {
		return fsid, fmt.Errorf("fanotify: statfs %s: %w", dir, err)
	}
	if _, ok := f.dirs.mounts[fsid]; ok {
		return fsid, nil
	}
	err = unix.FanotifyMark(f.fd, unix.FAN_MARK_ADD|unix.FAN_MARK_FILESYSTEM, fanotifyMask, unix.AT_FDCWD, dir)
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.ENODEV), errors.Is(err, unix.EOPNOTSUPP),
		errors.Is(err, unix.EXDEV), errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS):
		return fsid, fmt.Errorf("%w: mark the filesystem of %s: %w", ErrFanotifyUnavailable, dir, err)
	case err != nil:
		return fsid, fmt.Errorf("fanotify: mark the filesystem of %s: %w", dir, err)
	}
	mfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fsid, fmt.Errorf("fanotify: open %s: %w", dir, err)
	}
	f.dirs.mounts[fsid] = mfd
	return fsid, nil
}

// markNested marks the filesystem mounted at dir inside a root.
func (f *Fanotify) markNested(dir string) ([8]byte, bool) {
	fsid, err := f.markFilesystem(dir)
	if err != nil {
		f.log.Warn("fanotify: a filesystem mounted inside a root cannot be watched", "path", dir, "err", err)
		return fsid, false
	}
	return fsid, true
}

// Name is "fanotify".
func (f *Fanotify) Name() string { return "fanotify" }

// Attributes reports true: fanotify events carry the acting pid.
func (f *Fanotify) Attributes() bool { return true }

// Close releases the fanotify group and the directories kept open. Run
// closes on return; Close is for a source that is never run.
func (f *Fanotify) Close() error {
	f.closeOnce.Do(func() {
		f.closeErr = f.group.Close()
		for _, fd := range f.dirs.mounts {
			unix.Close(fd)
		}
	})
	return f.closeErr
}

// Run reads events and sends those under the roots on out until ctx is
// done (it returns ctx.Err()) or reading fails. It closes the source on
// return; it can be called once.
//
// After a read that did not fill half the buffer, Run pauses readPause
// before the next one, so that events gather in the kernel's queue while
// nobody waits on it (see package fanotify: no wake-up per event).
func (f *Fanotify) Run(ctx context.Context, out chan<- Event) error {
	if !f.running.CompareAndSwap(false, true) {
		return errors.New("fanotify: Run called twice")
	}
	defer f.Close()
	stop := context.AfterFunc(ctx, f.group.Interrupt)
	defer stop()

	buf := make([]byte, readBufSize)
	pause := time.NewTimer(0)
	<-pause.C
	for {
		n, err := f.read(ctx, buf)
		if err != nil {
			return err
		}
		if err := f.handleRead(ctx, buf[:n], out); err != nil {
			return err
		}
		if n < len(buf)/2 {
			pause.Reset(readPause)
			select {
			case <-ctx.Done():
				pause.Stop()
				return ctx.Err()
			case <-pause.C:
			}
		}
	}
}

// read reads what the group holds, waiting while it holds nothing.
func (f *Fanotify) read(ctx context.Context, buf []byte) (int, error) {
	n, err := f.group.Read(ctx, buf)
	if err != nil && ctx.Err() == nil {
		return 0, fmt.Errorf("fanotify: read: %w", err)
	}
	return n, err
}

// handleRead turns one read's events into Events. Every descriptor the
// kernel put in them is closed, whatever happens.
func (f *Fanotify) handleRead(ctx context.Context, b []byte, out chan<- Event) error {
	now := time.Now()
	f.dirs.newRead()
	off := 0
	defer func() { closeEventFds(b[off:]) }()
	for off < len(b) {
		r, n, err := parseEvent(b[off:])
		if err != nil {
			return fmt.Errorf("fanotify: %w", err)
		}
		err = f.handle(ctx, r, b[off+n:], now, out)
		r.closeFds()
		off += n
		if err != nil {
			return err
		}
	}
	return nil
}

// handle reports one event; rest is what follows it in the read buffer.
func (f *Fanotify) handle(ctx context.Context, r fanEvent, rest []byte, now time.Time, out chan<- Event) error {
	if r.mask&unix.FAN_Q_OVERFLOW != 0 {
		f.log.Warn("fanotify: the kernel queue overflowed; events were lost, the roots need a rescan")
		for _, root := range f.roots {
			ev := Event{Time: now, Kind: Overflow, Path: root.given, Root: root.given, Dir: true,
				Detail: map[string]string{"queue": "kernel"}}
			if err := send(ctx, out, ev); err != nil {
				return err
			}
		}
		return nil
	}
	if r.pid == f.self {
		return nil
	}
	if r.mask&unix.FAN_RENAME != 0 {
		return f.handleRename(ctx, r, rest, now, out)
	}
	if r.dir.key == nil {
		return nil // no directory record: nothing we asked for
	}
	dir, ok := f.dirs.resolve(r.dir.key, rest)
	if !ok {
		f.unplaced++
		f.log.Debug("fanotify: event in a directory that cannot be found, dropped", "name", string(r.dir.name), "mask", r.mask)
		return nil
	}
	isDir := r.mask&unix.FAN_ONDIR != 0
	if isDir && r.obj != nil && r.mask&unix.FAN_DELETE != 0 {
		defer f.dirs.forget(r.obj)
	}
	if !dir.relevant() {
		return nil
	}
	path := join(dir.path, r.dir.name)
	ri := dir.root
	if dir.ancestor {
		ri = f.roots.match(path)
	}
	if ri < 0 {
		return nil
	}
	if isDir && r.obj != nil && r.mask&unix.FAN_CREATE != 0 {
		f.dirs.learn(r.obj, path)
	}
	root := f.roots[ri]
	p, known := f.attr.principal(r.pid, int(r.pidfd), now)
	for _, kb := range kindBits {
		if r.mask&kb.bit == 0 {
			continue
		}
		ev := Event{Time: now, Kind: kb.kind, Path: root.outward(path), Dir: isDir, Root: root.given, Principal: p}
		if !known {
			setDetail(&ev, "principal", "unknown")
		}
		if dir.gone {
			setDetail(&ev, "unresolved", "1")
		}
		if kb.kind == Delete && path == root.real {
			setDetail(&ev, "root", "deleted")
			f.log.Warn("fanotify: a watched root was deleted", "root", root.given)
		}
		if err := send(ctx, out, ev); err != nil {
			return err
		}
	}
	return nil
}

// handleRename reports a FAN_RENAME event, which names both the old and
// the new parent and name.
func (f *Fanotify) handleRename(ctx context.Context, r fanEvent, rest []byte, now time.Time, out chan<- Event) error {
	oldPath, oldGone := f.renameSide(r.dir, rest)
	newPath, newGone := f.renameSide(r.newDir, rest)
	oldRoot, newRoot := f.roots.match(oldPath), f.roots.match(newPath)
	isDir := r.mask&unix.FAN_ONDIR != 0
	if isDir && newPath != "" {
		if oldPath != "" {
			f.dirs.moved(r.obj, oldPath, newPath)
		} else if r.obj != nil {
			f.dirs.learn(r.obj, newPath)
		}
	}
	// Roots strictly inside the renamed directory went with it, or came
	// back with it.
	var carried []int
	if isDir {
		for ri, root := range f.roots {
			if strictlyUnder(root.real, oldPath) || strictlyUnder(root.real, newPath) {
				carried = append(carried, ri)
			}
		}
	}
	if oldRoot < 0 && newRoot < 0 && len(carried) == 0 {
		return nil
	}
	p, known := f.attr.principal(r.pid, int(r.pidfd), now)
	mk := func(kind Kind, ri int, path string) Event {
		root := f.roots[ri]
		ev := Event{Time: now, Kind: kind, Path: root.outward(path), Dir: isDir, Root: root.given, Principal: p}
		if !known {
			setDetail(&ev, "principal", "unknown")
		}
		if oldGone || newGone {
			setDetail(&ev, "unresolved", "1")
		}
		return ev
	}
	var evs []Event
	for _, ri := range carried {
		real := f.roots[ri].real
		if strictlyUnder(real, oldPath) {
			ev := mk(Delete, ri, real)
			setDetail(&ev, "root", "moved")
			if newPath != "" {
				setDetail(&ev, "moved_to", newPath+real[len(oldPath):])
			}
			evs = append(evs, ev)
		} else {
			ev := mk(Create, ri, real)
			if oldPath != "" {
				ev.OldPath = oldPath + real[len(newPath):]
			}
			setDetail(&ev, "rename", "unpaired")
			evs = append(evs, ev)
		}
	}
	if oldRoot >= 0 && oldRoot == newRoot {
		ev := mk(Rename, newRoot, newPath)
		ev.OldPath = f.roots[oldRoot].outward(oldPath)
		evs = append(evs, ev)
	} else {
		if oldRoot >= 0 {
			ev := mk(Delete, oldRoot, oldPath)
			setDetail(&ev, "rename", "unpaired")
			if newRoot >= 0 {
				setDetail(&ev, "moved_to", f.roots[newRoot].outward(newPath))
			} else if newPath != "" {
				setDetail(&ev, "moved_to", newPath)
			} else {
				setDetail(&ev, "unresolved", "1")
			}
			if oldPath == f.roots[oldRoot].real {
				setDetail(&ev, "root", "moved")
			}
			evs = append(evs, ev)
		}
		if newRoot >= 0 {
			ev := mk(Create, newRoot, newPath)
			ev.OldPath = oldPath
			if oldRoot >= 0 {
				ev.OldPath = f.roots[oldRoot].outward(oldPath)
			}
			setDetail(&ev, "rename", "unpaired")
			if oldPath == "" {
				setDetail(&ev, "unresolved", "1")
			}
			evs = append(evs, ev)
		}
	}
	for _, ev := range evs {
		if ev.Detail["root"] == "moved" {
			f.log.Warn("fanotify: a watched root was moved away", "root", ev.Root, "to", ev.Detail["moved_to"])
		}
		if err := send(ctx, out, ev); err != nil {
			return err
		}
	}
	return nil
}

// renameSide is the path one side of a rename names, "" when its
// directory cannot be found, and whether that directory was gone.
func (f *Fanotify) renameSide(fn fidName, rest []byte) (string, bool) {
	if fn.key == nil || len(fn.name) == 0 {
		return "", false
	}
	d, ok := f.dirs.resolve(fn.key, rest)
	if !ok {
		return "", false
	}
	return join(d.path, fn.name), d.gone
}

func setDetail(ev *Event, k, v string) {
	if ev.Detail == nil {
		ev.Detail = make(map[string]string, 2)
	}
	ev.Detail[k] = v
}

func send(ctx context.Context, out chan<- Event, ev Event) error {
	select {
	case out <- ev:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// fanEvent is one event as read, its slices pointing into the read buffer.
type fanEvent struct {
	mask   uint64
	fd     int32 // FAN_NOFD in FID mode
	pid    int32
	pidfd  int32   // >= 0 a descriptor to close, else pidfdGone or pidfdError
	dir    fidName // DFID_NAME, DFID or (FAN_RENAME) OLD_DFID_NAME
	newDir fidName // (FAN_RENAME) NEW_DFID_NAME
	obj    []byte  // FID: the object itself, as a cache key
}

// fidName is a directory handle record: key is the fsid followed by the
// struct file_handle; name the entry in that directory ("." or empty for
// the directory itself).
type fidName struct {
	key, name []byte
}

func (r fanEvent) closeFds() {
	if r.pidfd >= 0 {
		unix.Close(int(r.pidfd))
	}
	if r.fd >= 0 {
		unix.Close(int(r.fd))
	}
}

// closeEventFds closes the descriptors in events not handled.
func closeEventFds(b []byte) {
	for len(b) > 0 {
		r, n, err := parseEvent(b)
		if err != nil {
			return
		}
		r.closeFds()
		b = b[n:]
	}
}

var errMalformed = errors.New("malformed event from the kernel")

const metadataLen = 24 // sizeof(struct fanotify_event_metadata)

// parseEvent parses the event at the start of b (struct
// fanotify_event_metadata, then info records: a header of type, pad and
// length, then the record) and returns it and its length. Info records
// it does not know, or that do not fit, are skipped.
func parseEvent(b []byte) (fanEvent, int, error) {
	ne := binary.NativeEndian
	r := fanEvent{fd: -1, pidfd: pidfdGone}
	if len(b) < metadataLen {
		return r, 0, errMalformed
	}
	evLen, metaLen := int(ne.Uint32(b[0:4])), int(ne.Uint16(b[6:8]))
	if b[4] != unix.FANOTIFY_METADATA_VERSION || evLen < metadataLen || evLen > len(b) ||
		metaLen < metadataLen || metaLen > evLen {
		return r, 0, errMalformed
	}
	r.mask = ne.Uint64(b[8:16])
	r.fd = int32(ne.Uint32(b[16:20]))
	r.pid = int32(ne.Uint32(b[20:24]))
	for off := metaLen; off+4 <= evLen; {
		typ, n := b[off], int(ne.Uint16(b[off+2:off+4]))
		if n < 4 || off+n > evLen {
			break
		}
		rec := b[off+4 : off+n]
		off += n
		switch typ {
		case unix.FAN_EVENT_INFO_TYPE_DFID_NAME, unix.FAN_EVENT_INFO_TYPE_DFID, unix.FAN_EVENT_INFO_TYPE_OLD_DFID_NAME:
			r.dir, _ = parseFid(rec)
		case unix.FAN_EVENT_INFO_TYPE_NEW_DFID_NAME:
			r.newDir, _ = parseFid(rec)
		case unix.FAN_EVENT_INFO_TYPE_FID:
			fn, ok := parseFid(rec)
			if ok {
				r.obj = fn.key
			}
		case unix.FAN_EVENT_INFO_TYPE_PIDFD:
			if len(rec) >= 4 {
				r.pidfd = int32(ne.Uint32(rec[0:4]))
			}
		}
	}
	return r, evLen, nil
}

// parseFid parses a fid record: __kernel_fsid_t, struct file_handle
// (handle_bytes, handle_type, f_handle), then for the _NAME types a
// NUL-terminated name padded to 4 bytes.
func parseFid(rec []byte) (fidName, bool) {
	if len(rec) < 16 {
		return fidName{}, false
	}
	hb := int(binary.NativeEndian.Uint32(rec[8:12]))
	if hb > len(rec)-16 {
		return fidName{}, false
	}
	fn := fidName{key: rec[:16+hb]}
	name := rec[16+hb:]
	for i, c := range name {
		if c == 0 {
			name = name[:i]
			break
		}
	}
	fn.name = name
	return fn, true
}
