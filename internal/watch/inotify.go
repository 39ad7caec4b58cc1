package watch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// ErrRootGone is returned by Inotify.Run when every watched root has been
// deleted or moved away: there is nothing left to watch.
var ErrRootGone = errors.New("watched root gone")

// InotifyOptions tune NewInotify.
type InotifyOptions struct {
	Logger *slog.Logger
}

// Inotify is a Source for users who may not use fanotify: inotify watches
// every directory of the trees, so it sees each change but not who made
// it. Build it with NewInotify, then call Run once.
//
// What inotify (through fsnotify v1.10) cannot give, and what Inotify does
// instead:
//   - No close-write: fsnotify keeps IN_CLOSE_WRITE behind an unexported
//     option, so writes are Modify events only.
//   - Renames are paired by the kernel's cookie when both names are under
//     the roots. fsnotify keeps the old name in an unexported field, shown
//     only by Event.String; Inotify reads it from there (see renamedFrom).
//     A name moved out of the trees becomes a Delete with
//     Detail["rename"]="unpaired" after renameGrace; one moved in is a
//     Create, as is every entry of a directory moved in.
//   - A directory created or moved in is walked and every entry already in
//     it is reported as a Create with Detail["found"]="scan": it may have
//     been made before its directory was watched. An entry can then be
//     reported twice; the coalescer merges such pairs.
//   - inotify cannot move a watch: after a directory is renamed its watches
//     are replaced, one directory at a time. A change made in the instant
//     between the rename and the replacement can be reported under the old
//     name.
//   - A watched root deleted or moved away is reported as a Delete of the
//     root with Detail["root"] = "deleted" or "moved"; the other roots stay
//     watched and Run returns ErrRootGone once none is left.
//   - Lost events are an Overflow event for every root, sent once the
//     directory watches are back in line with the trees, with
//     Detail["queue"] = "kernel" (fs.inotify.max_queued_events was
//     reached; Count 0, unknown) or "reader" (Inotify's own queue of
//     inotifyQueueLimit events, full while out was not read; Count = how
//     many it dropped).
type Inotify struct {
	roots []string // absolute, clean, as given
	live  map[string]bool
	log   *slog.Logger

	w        *fsnotify.Watcher
	q        *inotifyQueue
	pumpDone chan struct{}
	close    sync.Once
	ran      atomic.Bool

	// Run's state, touched only by Run's goroutine.
	dirs  map[string]map[string]struct{} // watched directory → its watched subdirectories
	gone  map[string]struct{}            // directories deleted or renamed away; see dropEcho
	moves map[string]*inotifyMove        // old name → rename waiting for its new name
	order []*inotifyMove                 // moves by deadline
	// attribEcho is the directory whose Attrib was the last event handled.
	attribEcho string
}

// inotifyMove is a name renamed away whose new name has not come yet.
type inotifyMove struct {
	ev       Event // the Delete to send if it never comes
	deadline time.Time
	done     bool
}

const (
	// renameGrace is how long the old name of a rename waits for the new
	// one. The kernel queues both in one rename(2), so only a move out of
	// the trees should ever wait the whole grace.
	renameGrace = 100 * time.Millisecond
	// inotifyQueueLimit bounds the events read from the kernel and not yet
	// handled; beyond it they are counted, dropped and reported as an
	// Overflow, as the kernel does with its own queue.
	inotifyQueueLimit = 1 << 16
	// goneLimit bounds the directories remembered for dropEcho.
	goneLimit = 1 << 14
)

// NewInotify returns a Source watching roots recursively with inotify
// (github.com/fsnotify/fsnotify v1.10.1). Events carry no principal
// (Attributes() false). Every directory is watched when NewInotify
// returns; changes are queued until Run reads them. Call Run once, or
// Close if Run will not be called.
func NewInotify(roots []string, opts InotifyOptions) (*Inotify, error) {
	if len(roots) == 0 {
		return nil, errors.New("inotify: no directory to watch")
	}
	s := &Inotify{
		live:  make(map[string]bool),
		log:   opts.Logger,
		dirs:  make(map[string]map[string]struct{}),
		gone:  make(map[string]struct{}),
		moves: make(map[string]*inotifyMove),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	for _, r := range roots {
		abs, err := filepath.Abs(r)
		if err != nil {
			return nil, fmt.Errorf("inotify: %w", err)
		}
		fi, err := os.Lstat(abs)
		if err != nil {
			return nil, fmt.Errorf("inotify: watch %s: %w", abs, err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			// Its watch would follow the directory, not the link.
			return nil, fmt.Errorf("inotify: watch %s: a symbolic link; give the directory it points to", abs)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("inotify: watch %s: not a directory", abs)
		}
		if !s.live[abs] {
			s.live[abs] = true
			s.roots = append(s.roots, abs)
		}
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("inotify: %w (at the fs.inotify.max_user_instances limit? raise it with sysctl)", err)
	}
	s.w = w
	s.q = &inotifyQueue{limit: inotifyQueueLimit, ready: make(chan struct{}, 1)}
	s.pumpDone = make(chan struct{})
	go s.q.pump(w, s.pumpDone)
	for _, r := range s.roots {
		err := s.addTree(context.Background(), nil, r, r, false, nil)
		if err == nil && !s.watched(r) {
			err = fmt.Errorf("inotify: cannot watch %s", r)
		}
		if err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// Name is "inotify".
func (s *Inotify) Name() string { return "inotify" }

// Attributes is false: inotify does not say who acted.
func (s *Inotify) Attributes() bool { return false }

// Close stops watching. Run closes on its way out; Close is for an Inotify
// whose Run is never called, and may be called more than once.
func (s *Inotify) Close() error {
	var err error
	s.close.Do(func() {
		err = s.w.Close()
		<-s.pumpDone
	})
	return err
}

// Run sends events to out until ctx is done (it returns ctx.Err()), every
// root is gone (ErrRootGone) or the watch fails. It closes the watcher
// before returning.
func (s *Inotify) Run(ctx context.Context, out chan<- Event) error {
	if !s.ran.CompareAndSwap(false, true) {
		return errors.New("inotify: Run called twice")
	}
	defer s.Close()

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var expire <-chan time.Time
		if m := s.nextMove(); m != nil {
			timer.Reset(time.Until(m.deadline))
			expire = timer.C
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.q.ready:
			if err := s.drain(ctx, out); err != nil {
				return err
			}
		case now := <-expire:
			for m := s.nextMove(); m != nil && !m.deadline.After(now); m = s.nextMove() {
				if err := s.settle(ctx, out, m); err != nil {
					return err
				}
			}
		case <-s.pumpDone:
			if err := s.drain(ctx, out); err != nil {
				return err
			}
			return errors.New("inotify: the watcher was closed")
		}
		if len(s.live) == 0 {
			return fmt.Errorf("inotify: %w: nothing left to watch", ErrRootGone)
		}
	}
}

// drain handles everything queued.
func (s *Inotify) drain(ctx context.Context, out chan<- Event) error {
	items, dropped := s.q.take()
	for i, it := range items {
		items[i] = inotifyItem{}
		var err error
		switch {
		case it.err == nil:
			err = s.handle(ctx, out, it.ev, it.at)
		case errors.Is(it.err, fsnotify.ErrEventOverflow):
			err = s.overflow(ctx, out, it.at, 0, "kernel")
		default:
			// Read errors and failed watch removals after a move; neither
			// loses events, and fsnotify carries on.
			s.log.Warn("inotify", "err", it.err)
		}
		if err != nil {
			return err
		}
	}
	if dropped > 0 {
		return s.overflow(ctx, out, time.Now(), dropped, "reader")
	}
	return nil
}

// handle turns one fsnotify event into ours.
func (s *Inotify) handle(ctx context.Context, out chan<- Event, fe fsnotify.Event, at time.Time) error {
	name := filepath.Clean(fe.Name)
	root := s.rootOf(name)
	if root == "" {
		return nil // a stale watch of a tree that left the roots
	}
	echo := s.attribEcho
	s.attribEcho = ""
	ev := Event{Time: at, Path: name, Root: root}
	if fe.Has(fsnotify.Create) {
		if err := s.created(ctx, out, ev, renamedFrom(fe)); err != nil {
			return err
		}
	}
	if fe.Has(fsnotify.Write) {
		ev.Kind = Modify
		if err := s.emit(ctx, out, ev); err != nil {
			return err
		}
	}
	if fe.Has(fsnotify.Chmod) {
		// A directory watched with its parent gets one event from each
		// watch, next to each other; the second is dropped.
		ev.Kind, ev.Dir = Attrib, s.watched(name)
		twice := ev.Dir && s.watched(filepath.Dir(name))
		if !twice || echo != name {
			if twice {
				s.attribEcho = name
			}
			if err := s.emit(ctx, out, ev); err != nil {
				return err
			}
		}
	}
	if fe.Has(fsnotify.Remove) {
		if err := s.removed(ctx, out, ev, "deleted"); err != nil {
			return err
		}
	}
	if fe.Has(fsnotify.Rename) {
		return s.removed(ctx, out, ev, "moved")
	}
	return nil
}

// created reports a new name: a Rename when fsnotify paired it with the
// old one, else a Create; a new directory is watched and walked.
func (s *Inotify) created(ctx context.Context, out chan<- Event, ev Event, from string) error {
	delete(s.gone, ev.Path)
	if m := s.moves[ev.Path]; m != nil {
		// Before the new directory here is watched: settling unwatches the
		// one that left.
		if err := s.settle(ctx, out, m); err != nil {
			return err
		}
	}
	fi, err := os.Lstat(ev.Path)
	ev.Dir = err == nil && fi.IsDir()
	if m := s.moves[from]; m != nil && from != "" {
		delete(s.moves, from)
		m.done = true
		ev.Kind, ev.OldPath, ev.Dir = Rename, from, ev.Dir || m.ev.Dir
		if ev.Dir {
			if err := s.rewatch(ctx, from, ev.Path, ev.Root); err != nil {
				return err
			}
		}
		return s.emit(ctx, out, ev)
	}
	ev.Kind = Create
	if from != "" {
		// The old name was already reported as an unpaired Delete.
		ev.Detail = map[string]string{"rename": "unpaired"}
	}
	if !ev.Dir {
		return s.emit(ctx, out, ev)
	}
	// Watched before it is reported, so that whoever reads the Create can
	// rely on what follows in the directory being seen.
	if _, err := s.tryWatch(ev.Path); err != nil {
		return err
	}
	if err := s.emit(ctx, out, ev); err != nil {
		return err
	}
	return s.addTree(ctx, out, ev.Path, ev.Root, true, nil)
}

// removed reports a name deleted (how "deleted") or renamed away
// ("moved"). A rename waits for its new name; see created.
func (s *Inotify) removed(ctx context.Context, out chan<- Event, ev Event, how string) error {
	if s.live[ev.Path] {
		return s.rootGone(ctx, out, ev, how)
	}
	if s.dropEcho(ev.Path, how) {
		return nil
	}
	ev.Kind, ev.Dir = Delete, s.watched(ev.Path)
	if ev.Dir {
		s.forget(ev.Path)
	}
	if how == "deleted" {
		if ev.Dir {
			s.unwatchTree(ev.Path)
		}
		return s.emit(ctx, out, ev)
	}
	ev.Detail = map[string]string{"rename": "unpaired"}
	m := &inotifyMove{ev: ev, deadline: time.Now().Add(renameGrace)}
	s.moves[ev.Path] = m
	s.order = append(s.order, m)
	return nil
}

// dropEcho reports whether a delete or rename of path repeats one already
// handled. When a watched directory is deleted or renamed, its parent's
// watch reports it and so may its own (IN_DELETE_SELF, IN_MOVE_SELF), and
// fsnotify gives both the same name. A second report of a name with no
// Create in between can only be that echo.
func (s *Inotify) dropEcho(path, how string) bool {
	if _, ok := s.gone[path]; ok {
		delete(s.gone, path)
		return true
	}
	if m := s.moves[path]; m != nil && how == "moved" {
		return true
	}
	return false
}

// forget remembers path as gone for dropEcho.
func (s *Inotify) forget(path string) {
	if len(s.gone) >= goneLimit {
		clear(s.gone) // at worst a directory is reported gone twice
	}
	s.gone[path] = struct{}{}
}

// rootGone reports a root deleted or moved away and stops watching it.
func (s *Inotify) rootGone(ctx context.Context, out chan<- Event, ev Event, how string) error {
	if err := s.settleAll(ctx, out); err != nil {
		return err
	}
	delete(s.live, ev.Path)
	s.unwatchTree(ev.Path)
	s.forget(ev.Path) // a root inside another is reported by both watches
	s.log.Warn("inotify: a watched root is gone", "root", ev.Path, "how", how)
	ev.Kind, ev.Dir, ev.Root = Delete, true, ev.Path
	ev.Detail = map[string]string{"root": how}
	return s.emit(ctx, out, ev)
}

// overflow re-adds every directory's watch, then reports lost events for
// every root: directories made, deleted or moved while events were lost
// would otherwise stay unwatched or watched under a stale name, and whoever
// rescans on an Overflow must find the trees watched again.
func (s *Inotify) overflow(ctx context.Context, out chan<- Event, at time.Time, lost int, where string) error {
	if err := s.settleAll(ctx, out); err != nil {
		return err
	}
	s.log.Warn("inotify: events lost; the trees must be rescanned", "queue", where, "lost", lost)
	clear(s.gone)
	old := s.dirs
	s.dirs = make(map[string]map[string]struct{})
	for _, r := range s.roots {
		if s.live[r] {
			if err := s.addTree(ctx, nil, r, r, false, nil); err != nil {
				return err
			}
		}
	}
	for d := range old {
		if !s.watched(d) {
			s.unwatch(d)
		}
	}
	for _, r := range s.roots {
		if s.live[r] {
			ev := Event{Time: at, Kind: Overflow, Path: r, Root: r, Dir: true, Count: lost, Detail: map[string]string{"queue": where}}
			if err := s.emit(ctx, out, ev); err != nil {
				return err
			}
		}
	}
	return nil
}

// emit sends ev, after the unpaired Delete of a rename away from the same
// name if one is waiting: it happened first.
func (s *Inotify) emit(ctx context.Context, out chan<- Event, ev Event) error {
	if m := s.moves[ev.Path]; m != nil {
		if err := s.settle(ctx, out, m); err != nil {
			return err
		}
	}
	select {
	case out <- ev:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// nextMove is the rename waiting longest for its new name, or nil.
func (s *Inotify) nextMove() *inotifyMove {
	for len(s.order) > 0 && s.order[0].done {
		s.order[0] = nil
		s.order = s.order[1:]
	}
	if len(s.order) == 0 {
		s.order = nil
		return nil
	}
	return s.order[0]
}

// settle gives up waiting for m's new name: the name left the trees.
func (s *Inotify) settle(ctx context.Context, out chan<- Event, m *inotifyMove) error {
	m.done = true
	delete(s.moves, m.ev.Path)
	if m.ev.Dir {
		s.unwatchTree(m.ev.Path)
	}
	return s.emit(ctx, out, m.ev)
}

func (s *Inotify) settleAll(ctx context.Context, out chan<- Event) error {
	for m := s.nextMove(); m != nil; m = s.nextMove() {
		if err := s.settle(ctx, out, m); err != nil {
			return err
		}
	}
	return nil
}

// rootOf is the innermost live root holding path, or "".
func (s *Inotify) rootOf(path string) string {
	best := ""
	for r := range s.live {
		if len(r) > len(best) && isWithin(path, r) {
			best = r
		}
	}
	return best
}

// isWithin reports whether path is dir or under it.
func isWithin(path, dir string) bool {
	if path == dir {
		return true
	}
	if dir == "/" {
		return strings.HasPrefix(path, "/")
	}
	return strings.HasPrefix(path, dir) && path[len(dir)] == '/'
}

// renamedFrom is the old name fsnotify paired with a Create by the rename
// cookie, or "". fsnotify v1.10 keeps it in an unexported field and shows
// it only in Event.String, as fmt "%-13s %q ← %q"; the prefix is rebuilt
// from the op and name so that a name holding " ← " cannot mislead, and
// TestInotifyReportsEachKind fails if the format changes.
func renamedFrom(e fsnotify.Event) string {
	prefix := fmt.Sprintf("%-13s %q ← ", e.Op.String(), e.Name)
	s := e.String()
	if !strings.HasPrefix(s, prefix) {
		return ""
	}
	old, err := strconv.Unquote(s[len(prefix):])
	if err != nil {
		return ""
	}
	return filepath.Clean(old)
}

// addTree watches dir and every directory under it. With report, every
// entry under dir (not dir itself) is sent as a Create: it may have been
// made before the watch on its directory was in place. Entries that vanish
// while walking are skipped.
// before, if set, is called with each directory before it is watched.
func (s *Inotify) addTree(ctx context.Context, out chan<- Event, dir, root string, report bool, before func(string)) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err != nil {
			if !vanishedErr(err) {
				s.log.Warn("inotify: cannot watch", "path", path, "err", err)
			}
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if report && path != dir {
			ev := Event{Time: time.Now(), Kind: Create, Path: path, Root: root, Dir: d.IsDir(),
				Detail: map[string]string{"found": "scan"}}
			if err := s.emit(ctx, out, ev); err != nil {
				return err
			}
		}
		if !d.IsDir() {
			return nil
		}
		if before != nil {
			before(path)
		}
		if ok, err := s.tryWatch(path); !ok {
			return cmp.Or(err, fs.SkipDir)
		}
		return nil
	})
}

// tryWatch watches the directory path. It reports false if it could not,
// with an error only when Run cannot go on: other failures are logged, or
// ignored when the directory vanished meanwhile.
func (s *Inotify) tryWatch(path string) (bool, error) {
	err := s.watch(path)
	switch {
	case err == nil:
		return true, nil
	case vanishedErr(err):
	case errors.Is(err, syscall.ENOSPC):
		return false, fmt.Errorf("inotify: watch %s: %w: at the fs.inotify.max_user_watches limit; raise it with sysctl", path, err)
	default:
		s.log.Warn("inotify: cannot watch", "path", path, "err", err)
	}
	return false, nil
}

// vanishedErr reports whether err says the path went away meanwhile.
func vanishedErr(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// rewatch moves the watches of a directory renamed from old to new. Each
// directory's old watch is removed just before its new one is added
// (inotify would hand back the old watch, old name and all, while it
// exists), so that neither name is unwatched for long.
func (s *Inotify) rewatch(ctx context.Context, old, new, root string) error {
	stale := map[string]struct{}{}
	s.subtree(old, stale)
	err := s.addTree(ctx, nil, new, root, false, func(path string) {
		was := old + path[len(new):]
		if _, ok := stale[was]; ok {
			delete(stale, was)
			s.unwatch(was)
		}
	})
	for d := range stale {
		s.unwatch(d)
	}
	return err
}

// watch adds an inotify watch on the directory path.
func (s *Inotify) watch(path string) error {
	if err := s.w.Add(path); err != nil {
		return err
	}
	if s.dirs[path] == nil {
		s.dirs[path] = map[string]struct{}{}
	}
	if parent := s.dirs[filepath.Dir(path)]; parent != nil && path != "/" {
		parent[path] = struct{}{}
	}
	delete(s.gone, path)
	return nil
}

func (s *Inotify) watched(path string) bool { return s.dirs[path] != nil }

// unwatch removes the watch on path, if any; its subdirectories keep
// theirs.
func (s *Inotify) unwatch(path string) {
	// The kernel drops the watch of a deleted directory by itself, and
	// fsnotify the one of a directory that moved: "not watched" is fine.
	_ = s.w.Remove(path)
	if parent := s.dirs[filepath.Dir(path)]; parent != nil {
		delete(parent, path)
	}
	delete(s.dirs, path)
}

// unwatchTree removes the watches on path and every directory under it.
func (s *Inotify) unwatchTree(path string) {
	set := map[string]struct{}{}
	s.subtree(path, set)
	for d := range set {
		s.unwatch(d)
	}
}

// subtree adds path and the watched directories under it to set.
func (s *Inotify) subtree(path string, set map[string]struct{}) {
	children, ok := s.dirs[path]
	if !ok {
		return
	}
	set[path] = struct{}{}
	for c := range children {
		s.subtree(c, set)
	}
}

// inotifyQueue holds what fsnotify reported until Run handles it. Its pump
// never blocks on Run: fsnotify sends errors while holding the lock that
// Add and Remove take, so a pump waiting for Run while Run adds a watch
// would deadlock.
type inotifyQueue struct {
	mu      sync.Mutex
	items   []inotifyItem
	spare   []inotifyItem
	dropped int
	limit   int
	ready   chan struct{} // signalled after each push
}

type inotifyItem struct {
	ev  fsnotify.Event
	err error
	at  time.Time
}

// pump moves fsnotify's events and errors to q until the watcher closes.
func (q *inotifyQueue) pump(w *fsnotify.Watcher, done chan<- struct{}) {
	defer close(done)
	events, errs := w.Events, w.Errors
	for events != nil || errs != nil {
		var it inotifyItem
		select {
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			it.ev = ev
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			it.err = err
		}
		it.at = time.Now()
		q.mu.Lock()
		if len(q.items) < q.limit {
			q.items = append(q.items, it)
		} else {
			q.dropped++
		}
		q.mu.Unlock()
		select {
		case q.ready <- struct{}{}:
		default:
		}
	}
}

// take returns everything queued and how many items were dropped after
// it; the slice is valid until the next take.
func (q *inotifyQueue) take() ([]inotifyItem, int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	items, dropped := q.items, q.dropped
	q.items, q.dropped = q.spare[:0], 0
	q.spare = nil
	if cap(items) <= 4096 {
		q.spare = items
	}
	return items, dropped
}
