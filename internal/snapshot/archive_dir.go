package snapshot

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"unicode/utf8"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/custodyhq/custody/internal/vault"
)

// dirScan is one directory being archived.
type dirScan struct {
	fd      int
	path    string        // relative to the root; "" for the root
	nodes   []Node        // one per entry, sorted; Type "" marks a dropped entry
	content []*contentIDs // per entry, for files read in this run
	chunks  sync.WaitGroup
}

// entryTask is work on one entry beyond its fstatat: reading a file or
// descending into a directory. parent is the entry in the parent tree.
type entryTask struct {
	i      int
	parent *Node
}

// archiveDir archives the directory open at fd and returns its tree id.
// parent is the same directory's tree in the parent version (nil if none)
// and parentID its id.
func (a *archiver) archiveDir(ctx context.Context, fd int, path string, parent *Tree, parentID vault.ID) (vault.ID, error) {
	ents, err := readDirEntries(fd)
	if err != nil {
		return vault.ID{}, fmt.Errorf("%s: read directory: %w", displayPath(path), err)
	}
	d := &dirScan{fd: fd, path: path, nodes: make([]Node, len(ents.list))}
	var pnodes []Node
	if parent != nil {
		pnodes = parent.Nodes
	}
	var tasks []entryTask
	pi := 0
	for i := range ents.list {
		if i%1024 == 0 && ctx.Err() != nil {
			return vault.ID{}, ctx.Err()
		}
		// Both lists are sorted by raw name: walk them in step.
		name := ents.name(i)
		for pi < len(pnodes) && compareName(&pnodes[pi], name) < 0 {
			pi++
		}
		var p *Node
		if pi < len(pnodes) && compareName(&pnodes[pi], name) == 0 {
			p = &pnodes[pi]
		}
		more, err := a.scanEntry(d, i, name, p)
		if err != nil {
			return vault.ID{}, err
		}
		if more {
			tasks = append(tasks, entryTask{i: i, parent: p})
		}
	}
	if len(tasks) > 0 {
		if err := a.runTasks(ctx, d, tasks); err != nil {
			return vault.ID{}, err
		}
	}

	kept := d.nodes[:0]
	for i := range d.nodes {
		if d.nodes[i].Type == "" {
			continue
		}
		if d.content != nil && d.content[i] != nil {
			d.nodes[i].Content = d.content[i].ids
		}
		kept = append(kept, d.nodes[i])
	}
	var id vault.ID
	if parent != nil && sameNodes(kept, parent.Nodes) {
		id = parentID // nothing changed: skip encoding, hashing, storing
	} else if id, err = a.saveTree(ctx, path, &Tree{Nodes: kept}); err != nil {
		return vault.ID{}, err
	}
	a.dirs.Add(1)
	a.progress(displayPath(path))
	return id, nil
}

// runTasks reads d's changed files and archives its subdirectories,
// concurrently when traversal slots are free, then waits for all their
// chunks to be stored.
func (a *archiver) runTasks(ctx context.Context, d *dirScan, tasks []entryTask) error {
	d.content = make([]*contentIDs, len(d.nodes))
	g, gctx := errgroup.WithContext(ctx)
	for _, t := range tasks {
		if gctx.Err() != nil {
			break
		}
		f := func() error { return a.readFile(gctx, d, t.i) }
		if d.nodes[t.i].Type == TypeDir {
			f = func() error { return a.archiveSubdir(gctx, d, t.i, t.parent) }
		}
		if !a.spawn(g, f) {
			break
		}
	}
	if err := g.Wait(); err != nil {
		return err
	}
	d.chunks.Wait()
	// A worker that failed cancelled ctx before releasing its chunk, so a
	// hole in some file's content cannot go unnoticed here.
	return ctx.Err()
}

// scanEntry fills d.nodes[i] from fstatat and, for an unchanged file,
// from the parent entry p. It reports whether the entry needs a task.
func (a *archiver) scanEntry(d *dirScan, i int, name []byte, p *Node) (bool, error) {
	n := &d.nodes[i]
	sname := ""
	if p != nil && p.NameRaw == nil {
		sname = p.Name // the same bytes, already a string
	} else {
		sname = string(name)
	}
	var st unix.Stat_t
	if err := unix.Fstatat(d.fd, sname, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return false, a.drop(d, i, joinPath(d.path, name), "lstat", err)
	}
	switch {
	case p != nil:
		n.Name, n.NameRaw = p.Name, p.NameRaw
	case utf8.Valid(name):
		n.Name = sname
	default:
		n.NameRaw = slices.Clone(name)
	}
	n.setStat(&st)
	n.User, n.Group = a.names.user(st.Uid), a.names.group(st.Gid)

	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		n.Type = TypeFile
		switch {
		case a.unchanged(p, n):
			n.Content, n.Xattrs = p.Content, p.Xattrs
		case n.Size == 0:
			// Nothing to read, so no need to open it (and no half-read
			// file to fear): one syscall for the xattrs instead of six.
			var err error
			if n.Xattrs, err = entryXattrs(d.fd, sname); err != nil {
				return false, fmt.Errorf("%s: read xattrs: %w", joinPath(d.path, name), err)
			}
		default:
			return true, nil
		}
		a.files.Add(1)
		a.fileBytes.Add(n.Size)
		return false, nil
	case unix.S_IFDIR:
		n.Type = TypeDir
		return true, nil
	case unix.S_IFLNK:
		n.Type = TypeSymlink
		return false, a.scanSymlink(d, i, sname, p)
	}
	n.Type = ""
	kind := specialKind(st.Mode)
	a.skip(joinPath(d.path, name), kind, fmt.Errorf("%w (%s)", ErrSpecialFile, kind))
	return false, nil
}

// unchanged reports whether the entry n, as just stat'ed, is the same
// version as its parent entry p: then a file reuses p's content without
// being read, and any entry p's xattrs (and a symlink p's target).
func (a *archiver) unchanged(p, n *Node) bool {
	if p == nil || p.Type != n.Type || p.ChangedWhileRead ||
		p.Size != n.Size || p.ModTime != n.ModTime || p.ChangeTime != n.ChangeTime ||
		(!a.opts.IgnoreInode && p.Inode != n.Inode) {
		return false
	}
	return n.Type != TypeFile || (p.Size == 0) == (len(p.Content) == 0)
}

// scanSymlink records a symlink's target and xattrs. Neither can change
// without changing its ctime, so an unchanged link reuses the parent's.
func (a *archiver) scanSymlink(d *dirScan, i int, name string, p *Node) error {
	n := &d.nodes[i]
	if a.unchanged(p, n) {
		n.LinkTarget, n.LinkTargetRaw, n.Xattrs = p.LinkTarget, p.LinkTargetRaw, p.Xattrs
		a.symlinks.Add(1)
		return nil
	}
	path := joinPath(d.path, n.RawName())
	target, err := readLinkAt(d.fd, name, int64(n.Size))
	if err == unix.EINVAL {
		err = unix.ENXIO // no longer a symlink
	}
	if err != nil {
		return a.drop(d, i, path, "readlink", err)
	}
	n.SetLinkTarget(target)
	if n.Xattrs, err = entryXattrs(d.fd, name); err != nil {
		return fmt.Errorf("%s: read xattrs: %w", path, err)
	}
	a.symlinks.Add(1)
	return nil
}

// archiveSubdir archives the directory d.nodes[i] into its subtree.
func (a *archiver) archiveSubdir(ctx context.Context, d *dirScan, i int, p *Node) error {
	n := &d.nodes[i]
	name := n.RawName()
	path := joinPath(d.path, name)
	fd, err := a.open(d.fd, string(name), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW)
	if err != nil {
		return a.drop(d, i, path, "open", err)
	}
	defer unix.Close(fd)
	if a.unchanged(p, n) {
		n.Xattrs = p.Xattrs
	} else if n.Xattrs, err = fdXattrs(fd); err != nil {
		return fmt.Errorf("%s: read xattrs: %w", path, err)
	}
	var ptree *Tree
	var pid vault.ID
	if p != nil && p.Type == TypeDir && p.Subtree != nil {
		pid = *p.Subtree
		if ptree, err = a.loadTree(ctx, pid, path); err != nil {
			return err
		}
	}
	id, err := a.archiveDir(ctx, fd, path, ptree, pid)
	if err != nil {
		return err
	}
	n.Subtree = &id
	return nil
}

// open opens name in dirfd without updating its atime where the kernel
// lets us (O_NOATIME needs ownership or CAP_FOWNER).
func (a *archiver) open(dirfd int, name string, flags int) (int, error) {
	flags |= unix.O_CLOEXEC
	fd, err := a.openat(dirfd, name, flags|unix.O_NOATIME, 0)
	if err == unix.EPERM {
		fd, err = a.openat(dirfd, name, flags, 0)
	}
	return fd, err
}

// drop leaves d.nodes[i] out of the tree after err. A vanished entry is
// dropped silently, an unreadable or replaced one with a warning; any
// other error ends the archive.
func (a *archiver) drop(d *dirScan, i int, path, op string, err error) error {
	d.nodes[i].Type = ""
	switch err {
	case unix.ENOENT:
		return nil
	case unix.EACCES, unix.EPERM:
		a.skip(path, "permission denied", &os.PathError{Op: op, Path: path, Err: err})
		return nil
	case unix.ELOOP, unix.ENOTDIR, unix.ENXIO:
		a.skip(path, "changed type during scan", ErrTypeChanged)
		return nil
	}
	return &os.PathError{Op: op, Path: path, Err: err}
}

// saveTree encodes and stores one directory's tree.
func (a *archiver) saveTree(ctx context.Context, path string, t *Tree) (vault.ID, error) {
	b, err := EncodeTree(t)
	if err != nil {
		return vault.ID{}, fmt.Errorf("%s: %w", displayPath(path), err)
	}
	id := a.blobs.BlobID(b)
	n, err := a.blobs.SaveBlob(ctx, vault.TreeBlob, id, b)
	if err != nil {
		return vault.ID{}, fmt.Errorf("%s: store tree: %w", displayPath(path), err)
	}
	a.storedBytes.Add(uint64(n))
	return id, nil
}

func displayPath(path string) string {
	if path == "" {
		return "."
	}
	return path
}

// compareName orders n against a raw name like Tree.Sort does, without
// allocating: the compiler compares string(name) in place.
func compareName(n *Node, name []byte) int {
	if n.NameRaw != nil {
		return bytes.Compare(n.NameRaw, name)
	}
	switch {
	case n.Name < string(name):
		return -1
	case n.Name == string(name):
		return 0
	}
	return 1
}

// sameNodes reports whether two node lists encode to the same tree. It
// compares every field of Node; TestSameNodesComparesEveryField fails when
// Node grows a field this function does not know.
func sameNodes(x, y []Node) bool {
	if len(x) != len(y) {
		return false
	}
	for i := range x {
		if !sameNode(&x[i], &y[i]) {
			return false
		}
	}
	return true
}

func sameNode(x, y *Node) bool {
	return x.Name == y.Name && bytes.Equal(x.NameRaw, y.NameRaw) && x.Type == y.Type &&
		x.Mode == y.Mode && x.UID == y.UID && x.GID == y.GID &&
		x.User == y.User && x.Group == y.Group && x.Size == y.Size &&
		x.ModTime == y.ModTime && x.ChangeTime == y.ChangeTime &&
		x.Inode == y.Inode && x.Device == y.Device && x.Links == y.Links &&
		slices.Equal(x.Content, y.Content) &&
		(x.Subtree == nil) == (y.Subtree == nil) && (x.Subtree == nil || *x.Subtree == *y.Subtree) &&
		x.LinkTarget == y.LinkTarget && bytes.Equal(x.LinkTargetRaw, y.LinkTargetRaw) &&
		slices.EqualFunc(x.Xattrs, y.Xattrs, func(p, q Xattr) bool {
			return p.Name == q.Name && bytes.Equal(p.NameRaw, q.NameRaw) &&
				(p.Value == nil) == (q.Value == nil) && bytes.Equal(p.Value, q.Value)
		}) &&
		x.ChangedWhileRead == y.ChangedWhileRead
}
