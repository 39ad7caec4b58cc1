package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/custodyhq/custody/internal/vault"
)

// ArchiveOptions tune Archive. The zero value archives without a parent.
type ArchiveOptions struct {
	// Parent is the root tree of the parent version; zero means none.
	// Files whose type, size, mtime, ctime and inode equal the parent's
	// reuse its content without being read.
	Parent vault.ID
	// IgnoreInode compares size, mtime and ctime only, for filesystems
	// that renumber inodes (FUSE, some NFS).
	IgnoreInode bool
	// Workers is how many goroutines hash and store chunks, and how many
	// extra goroutines may scan directories and read files; 0 means
	// runtime.NumCPU().
	Workers int
	// Progress, if not nil, is called often and from any goroutine with
	// cumulative counts; throttling is the caller's job.
	Progress func(ArchiveProgress)
	// Warn, if not nil, is told about skipped entries and files that
	// changed while they were read. The snapshot goes on. Calls are
	// serialized, though not always from the same goroutine.
	Warn func(path string, err error)
	// SkipUnchanged (Take only): when the tree equals the parent
	// version's, save no new version; Take returns the parent with
	// Unchanged set. Scheduled snapshots of idle data add nothing.
	SkipUnchanged bool
}

// ArchiveProgress counts what Archive has done so far.
type ArchiveProgress struct {
	Files, Dirs, Bytes, NewBytes uint64
	Path                         string // the file or directory just finished
}

// Skipped is an entry Archive left out of the snapshot, and why.
type Skipped struct {
	Path   string
	Reason string
}

// ArchiveResult describes a finished snapshot. Paths are relative to the
// archived root, "/"-separated, and may hold any bytes but NUL.
type ArchiveResult struct {
	Tree                  vault.ID // the root tree
	Files, Dirs, Symlinks uint64   // Dirs counts the root too
	Bytes                 uint64   // file content archived
	NewBytes              uint64   // plaintext of chunks the vault did not have
	StoredBytes           uint64   // bytes newly written by the vault, data and trees
	Skipped               []Skipped
	ChangedWhileRead      []string
}

var (
	// ErrSpecialFile is passed to Warn for named pipes, sockets and device
	// nodes: a snapshot records files, directories and symlinks only.
	ErrSpecialFile = errors.New("special file not archived")
	// ErrChangedWhileRead is passed to Warn for a file that kept changing
	// while it was read; its snapshot content may mix old and new data.
	ErrChangedWhileRead = errors.New("file changed while it was read; snapshot again once it is quiet")
	// ErrTypeChanged is passed to Warn for an entry that was replaced by
	// another kind of entry between listing and reading it.
	ErrTypeChanged = errors.New("entry changed type during the scan")
)

// readAttempts bounds how often a file that changes under us is re-read.
const readAttempts = 3

// Archive stores the directory tree at root in blobs and returns its root
// tree. Each directory becomes one tree blob; file contents are cut by the
// keyed chunker and stored as data blobs. The same directory state gives
// the same root tree id, whatever the scheduling.
//
// It walks with directory file descriptors (Linux: getdents64, fstatat,
// openat, and /proc/self/fd for the xattrs of entries it does not open),
// so any depth and any name bytes work. Memory in use: at most
// 2×Workers+2 chunks (up to 4 MiB each), one chunker (8 MiB) per file
// being read (at most Workers+1), and the entries of the directories
// being walked.
func Archive(ctx context.Context, blobs Blobs, root string, opts ArchiveOptions) (*ArchiveResult, error) {
	return newArchiver(blobs, opts).run(ctx, root)
}

// archiver is the state of one Archive call.
type archiver struct {
	blobs   Blobs
	opts    ArchiveOptions
	workers int

	jobs   chan chunkJob // to the storing workers
	tokens chan struct{} // one per chunk buffer in flight
	slots  chan struct{} // one per traversal goroutine beyond the first
	// Free lists rather than sync.Pools: a GC empties a Pool, and then
	// every small file would allocate a chunk buffer or an 8 MiB chunker.
	// Tokens bound the buffers in use, traversal slots the chunkers.
	bufs     chan *[]byte
	chunkers chan *fileChunker
	names    idNames
	abort    context.CancelCauseFunc // stops the whole archive on a worker's error

	// openat opens entries; tests replace it to simulate EACCES.
	openat func(dirfd int, name string, flags int, mode uint32) (int, error)
	// afterRead, if set, runs between reading a file and the fstat that
	// checks it did not change; tests use it to change files.
	afterRead func(path string)

	files, dirs, symlinks            atomic.Uint64
	fileBytes, newBytes, storedBytes atomic.Uint64

	mu               sync.Mutex
	skipped          []Skipped
	changedWhileRead []string
	warnMu           sync.Mutex // serializes opts.Warn
}

func newArchiver(blobs Blobs, opts ArchiveOptions) *archiver {
	w := opts.Workers
	if w <= 0 {
		w = runtime.NumCPU()
	}
	a := &archiver{
		blobs:   blobs,
		opts:    opts,
		workers: w,
		jobs:    make(chan chunkJob),
		tokens:  make(chan struct{}, 2*w+2),
		slots:   make(chan struct{}, w),
		openat:  unix.Openat,

		bufs:     make(chan *[]byte, 2*w+2),
		chunkers: make(chan *fileChunker, w+1),
	}
	return a
}

func (a *archiver) run(ctx context.Context, root string) (*ArchiveResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fd, err := openRoot(root)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)

	var parent *Tree
	if !a.opts.Parent.IsZero() {
		if parent, err = a.loadTree(ctx, a.opts.Parent, ""); err != nil {
			return nil, fmt.Errorf("archive %s: %w", root, err)
		}
	}

	actx, abort := context.WithCancelCause(ctx)
	defer abort(nil)
	a.abort = abort
	g, gctx := errgroup.WithContext(actx)
	for range a.workers {
		g.Go(func() error { return a.storeChunks(gctx) })
	}
	var tree vault.ID
	g.Go(func() error {
		defer close(a.jobs)
		var err error
		tree, err = a.archiveDir(gctx, fd, "", parent, a.opts.Parent)
		return err
	})
	err = g.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if cause := context.Cause(actx); cause != nil {
		err = cause // a worker's error; the walk only saw the cancellation
	}
	if err != nil {
		return nil, fmt.Errorf("archive %s: %w", root, err)
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	slices.SortFunc(a.skipped, func(x, y Skipped) int { return strings.Compare(x.Path, y.Path) })
	slices.Sort(a.changedWhileRead)
	return &ArchiveResult{
		Tree:             tree,
		Files:            a.files.Load(),
		Dirs:             a.dirs.Load(),
		Symlinks:         a.symlinks.Load(),
		Bytes:            a.fileBytes.Load(),
		NewBytes:         a.newBytes.Load(),
		StoredBytes:      a.storedBytes.Load(),
		Skipped:          a.skipped,
		ChangedWhileRead: a.changedWhileRead,
	}, nil
}

// openRoot opens root, following a symlink there, and insists on a directory.
func openRoot(root string) (int, error) {
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err == unix.ENOTDIR {
		return -1, fmt.Errorf("archive %s: not a directory; give the dataset's directory", root)
	}
	if err != nil {
		return -1, fmt.Errorf("archive: %w", &os.PathError{Op: "open", Path: root, Err: err})
	}
	return fd, nil
}

// loadTree loads the parent tree id, which describes the directory at path.
func (a *archiver) loadTree(ctx context.Context, id vault.ID, path string) (*Tree, error) {
	b, err := a.blobs.LoadBlob(ctx, id)
	if err == nil {
		var t *Tree
		if t, err = DecodeTree(b); err == nil {
			return t, nil
		}
	}
	if path == "" {
		path = "."
	}
	return nil, fmt.Errorf("%s: load parent tree %s: %w", path, id.Short(), err)
}

// spawn runs f on a new goroutine of g when a traversal slot is free, else
// in the caller: the walk never waits for a slot, so it cannot deadlock.
// It reports false when f failed inline; the error then goes to g too, so
// that g's context cancels f's siblings.
func (a *archiver) spawn(g *errgroup.Group, f func() error) bool {
	select {
	case a.slots <- struct{}{}:
		g.Go(func() error {
			defer func() { <-a.slots }()
			return f()
		})
		return true
	default:
	}
	if err := f(); err != nil {
		g.Go(func() error { return err })
		return false
	}
	return true
}

// skip records an entry left out of the snapshot and warns about it.
func (a *archiver) skip(path, reason string, err error) {
	a.mu.Lock()
	a.skipped = append(a.skipped, Skipped{Path: path, Reason: reason})
	a.mu.Unlock()
	a.warn(path, err)
}

func (a *archiver) changed(path string) {
	a.mu.Lock()
	a.changedWhileRead = append(a.changedWhileRead, path)
	a.mu.Unlock()
	a.warn(path, ErrChangedWhileRead)
}

func (a *archiver) warn(path string, err error) {
	if a.opts.Warn != nil {
		a.warnMu.Lock()
		defer a.warnMu.Unlock()
		a.opts.Warn(path, err)
	}
}

func (a *archiver) progress(path string) {
	if a.opts.Progress == nil {
		return
	}
	a.opts.Progress(ArchiveProgress{
		Files:    a.files.Load(),
		Dirs:     a.dirs.Load(),
		Bytes:    a.fileBytes.Load(),
		NewBytes: a.newBytes.Load(),
		Path:     path,
	})
}

// joinPath is the root-relative path of name in the directory dir.
func joinPath(dir string, name []byte) string {
	if dir == "" {
		return string(name)
	}
	return dir + "/" + string(name)
}
