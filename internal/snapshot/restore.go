package snapshot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"golang.org/x/sync/errgroup"

	"github.com/custodyhq/custody/internal/vault"
)

// RestoreOptions tune Restore. The zero value restores into an empty
// directory with 2×NumCPU workers.
type RestoreOptions struct {
	// Overwrite allows a non-empty target: entries of the version replace
	// what is there under the same name, unless it is already a regular
	// file of the right size, mtime and mode. Other entries are left alone.
	Overwrite bool
	// Workers is how many files are written and how many blobs loaded at
	// once; 0 means 2×runtime.NumCPU().
	Workers int
	// Progress, if not nil, is called from any goroutine (one call at a
	// time) with cumulative counts as files and chunks are written.
	Progress func(RestoreProgress)
	// Warn, if not nil, is told about metadata that could not be restored
	// (xattrs the filesystem or the user's rights do not allow). The
	// restore goes on.
	Warn func(path string, err error)
}

// RestoreProgress counts what Restore has done so far.
type RestoreProgress struct {
	Files, Bytes uint64
	Path         string // the file being written, relative to the version root
}

// RestoreResult describes a finished restore. Files and Bytes count every
// regular file in place at the end, Skipped those of them that a resumed or
// overwriting restore found already complete and left untouched.
type RestoreResult struct {
	Files, Dirs, Symlinks, Hardlinks, Skipped uint64
	Bytes                                     uint64
}

// ErrTargetNotEmpty is returned when the target directory holds something
// other than an interrupted restore of the same version and path.
var ErrTargetNotEmpty = errors.New("target directory is not empty")

// markerName is the resume marker Restore keeps in the target while it
// works: a rerun that finds the marker of the same tree and path resumes
// instead of refusing the non-empty directory.
const markerName = ".custody-restore"

type restoreMarker struct {
	Tree   vault.ID `json:"tree"`
	Sub    string   `json:"sub"`
	SubRaw []byte   `json:"sub_raw,omitempty"` // when the path is not UTF-8
}

func newMarker(tree vault.ID, sub string) restoreMarker {
	if utf8.ValidString(sub) {
		return restoreMarker{Tree: tree, Sub: sub}
	}
	return restoreMarker{Tree: tree, SubRaw: []byte(sub)}
}

// Restore writes the entry sub of the version whose root tree is tree into
// target: a directory's contents go into target, a file or symlink goes to
// target/<its name>. target is created if missing. It must be empty unless
// opts.Overwrite is set or it holds an interrupted restore of the same tree
// and sub, which is then resumed.
//
// Nothing is ever written outside target, whatever the vault holds: every
// operation goes through an os.Root (one per directory, so depth is not
// limited by PATH_MAX) or a descriptor of a directory opened through one,
// and symlinks are created, never followed.
//
// While it works, Restore keeps a marker file, .custody-restore, in target;
// it is removed when the restore succeeds.
func Restore(ctx context.Context, blobs Blobs, tree vault.ID, sub string, target string, opts RestoreOptions) (*RestoreResult, error) {
	parts := splitSub(sub)
	n, err := Lookup(ctx, blobs, tree, sub)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(target, 0o700); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	top, err := os.OpenRoot(target)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	defer top.Close()

	r := newRestorer(blobs, top, opts)
	marker := newMarker(tree, joinParts(parts))
	if r.existing, err = prepareTarget(top, marker, opts.Overwrite); err != nil {
		return nil, fmt.Errorf("restore into %s: %w", target, err)
	}
	if err := r.run(ctx, n, parts); err != nil {
		return nil, err
	}
	return &r.res, nil
}

func joinParts(parts []string) string { return strings.Join(parts, "/") }

// prepareTarget decides whether top may be restored into and writes the
// resume marker. existing reports that top was not empty, so entries must
// be looked at before they are created.
func prepareTarget(top *os.Root, m restoreMarker, overwrite bool) (existing bool, err error) {
	if b, err := top.ReadFile(markerName); err == nil {
		var old restoreMarker
		if json.Unmarshal(b, &old) == nil && old.Tree == m.Tree && old.Sub == m.Sub && bytes.Equal(old.SubRaw, m.SubRaw) {
			return true, nil // resume
		}
		if !overwrite {
			return false, fmt.Errorf("%w: it holds an interrupted restore of another version or path; pass overwrite to restore over it", ErrTargetNotEmpty)
		}
	}
	d, err := top.Open(".")
	if err != nil {
		return false, err
	}
	names, err := d.Readdirnames(1)
	d.Close()
	if err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	if len(names) > 0 {
		if !overwrite {
			return false, ErrTargetNotEmpty
		}
		existing = true
	}
	b, err := json.Marshal(m)
	if err != nil {
		return false, err
	}
	if err := top.Remove(markerName); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	f, err := top.OpenFile(markerName, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return false, err
	}
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return existing, err
}

// restorer is the state of one Restore call.
type restorer struct {
	blobs     Blobs
	top       *os.Root
	opts      RestoreOptions
	workers   int
	readAhead int           // most blobs of one file loaded at once
	loads     chan struct{} // one token per blob loading or loaded, not yet written
	bufs      chan []byte   // free plaintext buffers; at most one per load token is in use
	asRoot    bool          // owners are restored only by root
	existing  bool          // the target was not empty: look before creating
	// ownsMarker is set when the version itself has an entry named like
	// the marker at the top: that entry replaces the marker and stays.
	ownsMarker bool

	links map[devIno]*linkGroup // walker only

	mu   sync.Mutex // guards res, the callbacks, open
	res  RestoreResult
	open map[*dirState]struct{} // directories not finished yet
}

func newRestorer(blobs Blobs, top *os.Root, opts RestoreOptions) *restorer {
	w := opts.Workers
	if w <= 0 {
		w = 2 * runtime.NumCPU()
	}
	return &restorer{
		blobs:     blobs,
		top:       top,
		opts:      opts,
		workers:   w,
		readAhead: min(max(w, 2), 16),
		loads:     make(chan struct{}, w),
		bufs:      make(chan []byte, w),
		asRoot:    os.Geteuid() == 0,
		links:     map[devIno]*linkGroup{},
		open:      map[*dirState]struct{}{},
	}
}

// dirState is one directory being restored. It is finished — its metadata
// applied, its handles closed — when pending drops to zero: one count for
// the walker still listing it, one per file job and subdirectory not done.
type dirState struct {
	parent  *dirState
	root    *os.Root // the directory; for the top, Restore's root
	dirf    *os.File // the directory opened through root
	fd      int      // dirf's descriptor, for *at calls
	node    *Node    // nil for the target itself when it is not a version entry
	path    string   // relative to the version root, for messages
	rel     string   // relative to the target, for Root.Link
	pending atomic.Int64
}

// fileJob is one regular file for the worker pool: written, or, for a
// hard link to a file written earlier in this restore, linked.
type fileJob struct {
	d     *dirState
	n     *Node
	name  string
	path  string
	group *linkGroup // the hard link group, when n has Links > 1
	link  bool       // link to group's first file instead of writing
}

func (r *restorer) run(ctx context.Context, n *Node, parts []string) error {
	defer r.closeAll()
	g, gctx := errgroup.WithContext(ctx)
	jobs := make(chan fileJob, r.workers)
	for range r.workers {
		g.Go(func() error {
			for j := range jobs {
				if err := gctx.Err(); err != nil {
					return err
				}
				if err := r.doJob(gctx, j); err != nil {
					return err
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(jobs)
		return r.walkTop(gctx, jobs, n, parts)
	})
	err := g.Wait()
	if err != nil && ctx.Err() != nil {
		// Report the caller's cancellation, not what it caused.
		return fmt.Errorf("restore: %w", context.Cause(ctx))
	}
	return err
}

// walkTop restores n, the entry the sub path names, into the target.
func (r *restorer) walkTop(ctx context.Context, jobs chan<- fileJob, n *Node, parts []string) error {
	dirf, err := r.top.Open(".")
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	top := &dirState{root: r.top, dirf: dirf, fd: int(dirf.Fd()), path: joinParts(parts)}
	top.pending.Store(1)
	r.track(top)
	if n.Type == TypeDir {
		if len(parts) > 0 {
			top.node = n
		}
		if err := r.fillDir(ctx, jobs, top, *n.Subtree); err != nil {
			return err
		}
	} else {
		top.path = joinParts(parts[:len(parts)-1])
		r.ownsMarker = string(n.RawName()) == markerName
		if err := r.restoreEntry(ctx, jobs, top, n); err != nil {
			return err
		}
	}
	return r.release(top)
}

// fillDir restores the entries of the tree id into d.
func (r *restorer) fillDir(ctx context.Context, jobs chan<- fileJob, d *dirState, id vault.ID) error {
	t, err := loadTree(ctx, r.blobs, id)
	if err != nil {
		return fmt.Errorf("restore %q: %w", d.path, err)
	}
	if d.parent == nil && t.Find([]byte(markerName)) != nil {
		r.ownsMarker = true
	}
	for i := range t.Nodes {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := r.restoreEntry(ctx, jobs, d, &t.Nodes[i]); err != nil {
			return err
		}
	}
	return nil
}

func (r *restorer) restoreEntry(ctx context.Context, jobs chan<- fileJob, d *dirState, n *Node) error {
	name := string(n.RawName())
	path := childPath(d.path, name)
	switch n.Type {
	case TypeDir:
		child, err := r.makeDir(d, n, name, path)
		if err != nil {
			return fmt.Errorf("restore %q: %w", path, err)
		}
		d.pending.Add(1)
		if err := r.fillDir(ctx, jobs, child, *n.Subtree); err != nil {
			return err
		}
		return r.release(child)
	case TypeSymlink:
		if err := r.makeSymlink(d, n, name, path); err != nil {
			return fmt.Errorf("restore %q: %w", path, err)
		}
		return nil
	}
	j := fileJob{d: d, n: n, name: name, path: path}
	if n.Links > 1 && n.Inode != 0 {
		key := devIno{n.Device, n.Inode}
		if g := r.links[key]; g != nil {
			j.group, j.link = g, true
		} else {
			j.group = &linkGroup{rel: childPath(d.rel, name), path: path, done: make(chan struct{})}
			r.links[key] = j.group
		}
	}
	d.pending.Add(1)
	select {
	case jobs <- j:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// makeDir creates the directory name in d, or, when the target was not
// empty, reuses the directory there. It is left owner-writable until it is
// finished, so that even a read-only directory can be filled by non-root.
func (r *restorer) makeDir(d *dirState, n *Node, name, path string) (*dirState, error) {
	create := true
	if r.existing {
		fi, err := d.root.Lstat(name)
		switch {
		case err == nil && fi.IsDir():
			create = false
			if fi.Mode().Perm()&0o700 != 0o700 {
				if err := d.root.Chmod(name, fi.Mode().Perm()|0o700); err != nil {
					return nil, err
				}
			}
		case err == nil:
			if err := d.root.Remove(name); err != nil {
				return nil, err
			}
		case !errors.Is(err, fs.ErrNotExist):
			return nil, err
		}
	}
	if create {
		if err := d.root.Mkdir(name, 0o700); err != nil {
			return nil, err
		}
	}
	root, err := d.root.OpenRoot(name)
	if err != nil {
		return nil, err
	}
	dirf, err := root.Open(".")
	if err != nil {
		root.Close()
		return nil, err
	}
	child := &dirState{parent: d, root: root, dirf: dirf, fd: int(dirf.Fd()), node: n, path: path, rel: childPath(d.rel, name)}
	child.pending.Store(1)
	r.track(child)
	return child, nil
}

// release drops one pending count of d, finishing d, and then perhaps its
// parents, when it was the last.
func (r *restorer) release(d *dirState) error {
	for ; d != nil; d = d.parent {
		if d.pending.Add(-1) != 0 {
			return nil
		}
		if err := r.finishDir(d); err != nil {
			return err
		}
	}
	return nil
}

// finishDir applies a directory's metadata once everything in it is done,
// so that creating its entries does not change its mtime afterwards.
func (r *restorer) finishDir(d *dirState) error {
	if d.parent == nil && !r.ownsMarker {
		if err := r.top.Remove(markerName); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("restore: remove resume marker: %w", err)
		}
	}
	var err error
	if d.node != nil {
		err = r.applyMeta(d.path, d.dirf, d.node)
		if err == nil {
			err = d.root.Chtimes(".", nsTime(d.node.ModTime), nsTime(d.node.ModTime))
		}
		if err != nil {
			err = fmt.Errorf("restore %q: %w", d.path, err)
		}
	}
	r.untrack(d)
	if err == nil && d.node != nil {
		r.count(func(res *RestoreResult) { res.Dirs++ })
	}
	return err
}

func (r *restorer) track(d *dirState) {
	r.mu.Lock()
	r.open[d] = struct{}{}
	r.mu.Unlock()
}

// untrack closes d's handles; the top root is Restore's to close.
func (r *restorer) untrack(d *dirState) {
	r.mu.Lock()
	delete(r.open, d)
	r.mu.Unlock()
	d.dirf.Close()
	if d.root != r.top {
		d.root.Close()
	}
}

// closeAll closes the directories an error or cancellation left unfinished.
func (r *restorer) closeAll() {
	r.mu.Lock()
	open := r.open
	r.open = map[*dirState]struct{}{}
	r.mu.Unlock()
	for d := range open {
		d.dirf.Close()
		if d.root != r.top {
			d.root.Close()
		}
	}
}

// count updates the result under the lock.
func (r *restorer) count(f func(*RestoreResult)) {
	r.mu.Lock()
	f(&r.res)
	r.mu.Unlock()
}

// progress adds files and bytes to the result and reports them.
func (r *restorer) progress(path string, files, n uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.res.Files += files
	r.res.Bytes += n
	if r.opts.Progress != nil {
		r.opts.Progress(RestoreProgress{Files: r.res.Files, Bytes: r.res.Bytes, Path: path})
	}
}

func (r *restorer) warn(path string, err error) {
	if r.opts.Warn == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.opts.Warn(path, err)
}
