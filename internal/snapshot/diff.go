package snapshot

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	"github.com/custodyhq/custody/internal/vault"
)

// Change is one path that differs between two versions.
type Change struct {
	Path string // relative to the version root, "/"-separated, raw bytes
	Kind string // "added", "removed" or "modified"
	// What changed, for "modified", in this order: "content", "mode",
	// "owner", "mtime", "type", "target", "xattrs".
	What []string
}

// DiffResult lists the changes from one version to another, each list in
// depth-first, byte-sorted path order.
type DiffResult struct {
	Added, Removed, Modified []Change
}

// Diff compares the versions whose root trees are a and b. Subtrees with
// the same id are equal by construction and are skipped without being
// loaded, so the cost follows the size of the change, not of the dataset.
// An added or removed directory is listed with everything under it. Only
// what a restore would reproduce counts as a modification: ctime, inode,
// device and link count differences alone do not.
func Diff(ctx context.Context, blobs Blobs, a, b vault.ID) (*DiffResult, error) {
	d := differ{blobs: blobs, res: &DiffResult{}}
	if err := d.trees(ctx, a, b, ""); err != nil {
		return nil, err
	}
	return d.res, nil
}

type differ struct {
	blobs Blobs
	res   *DiffResult
}

func (d *differ) trees(ctx context.Context, a, b vault.ID, dir string) error {
	if a == b {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	ta, err := loadTree(ctx, d.blobs, a)
	if err != nil {
		return fmt.Errorf("diff %q: %w", dir, err)
	}
	tb, err := loadTree(ctx, d.blobs, b)
	if err != nil {
		return fmt.Errorf("diff %q: %w", dir, err)
	}
	i, j := 0, 0
	for i < len(ta.Nodes) || j < len(tb.Nodes) {
		var c int
		switch {
		case i == len(ta.Nodes):
			c = 1
		case j == len(tb.Nodes):
			c = -1
		default:
			c = bytes.Compare(ta.Nodes[i].RawName(), tb.Nodes[j].RawName())
		}
		switch {
		case c < 0:
			na := &ta.Nodes[i]
			err = d.all(ctx, "removed", na, childPath(dir, string(na.RawName())), true)
			i++
		case c > 0:
			nb := &tb.Nodes[j]
			err = d.all(ctx, "added", nb, childPath(dir, string(nb.RawName())), true)
			j++
		default:
			err = d.both(ctx, &ta.Nodes[i], &tb.Nodes[j], childPath(dir, string(ta.Nodes[i].RawName())))
			i++
			j++
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// both compares two entries of the same name.
func (d *differ) both(ctx context.Context, na, nb *Node, path string) error {
	if what := nodeChanges(na, nb); len(what) > 0 {
		d.res.Modified = append(d.res.Modified, Change{Path: path, Kind: "modified", What: what})
	}
	switch {
	case na.Type == TypeDir && nb.Type == TypeDir:
		return d.trees(ctx, *na.Subtree, *nb.Subtree, path)
	case na.Type == TypeDir:
		return d.all(ctx, "removed", na, path, false)
	case nb.Type == TypeDir:
		return d.all(ctx, "added", nb, path, false)
	}
	return nil
}

// all lists n (when self) and everything under it as kind.
func (d *differ) all(ctx context.Context, kind string, n *Node, path string, self bool) error {
	list := &d.res.Added
	if kind == "removed" {
		list = &d.res.Removed
	}
	if self {
		*list = append(*list, Change{Path: path, Kind: kind})
	}
	if n.Type != TypeDir {
		return nil
	}
	return walkTree(ctx, d.blobs, *n.Subtree, path, func(p string, _ *Node) error {
		*list = append(*list, Change{Path: p, Kind: kind})
		return nil
	})
}

// nodeChanges says what differs between two entries of the same name, in
// the order documented on Change.What. A directory's subtree is not its
// "content": what changed inside it is listed path by path.
func nodeChanges(a, b *Node) []string {
	var what []string
	if a.Type == TypeFile && b.Type == TypeFile && (a.Size != b.Size || !slices.Equal(a.Content, b.Content)) {
		what = append(what, "content")
	}
	if a.Mode != b.Mode {
		what = append(what, "mode")
	}
	if a.UID != b.UID || a.GID != b.GID {
		what = append(what, "owner")
	}
	if a.ModTime != b.ModTime {
		what = append(what, "mtime")
	}
	if a.Type != b.Type {
		what = append(what, "type")
	}
	if a.Type == TypeSymlink && b.Type == TypeSymlink && !bytes.Equal(a.RawLinkTarget(), b.RawLinkTarget()) {
		what = append(what, "target")
	}
	if !sameXattrs(a.Xattrs, b.Xattrs) {
		what = append(what, "xattrs")
	}
	return what
}

// sameXattrs compares two attribute lists, whatever their order.
func sameXattrs(a, b []Xattr) bool {
	if len(a) != len(b) {
		return false
	}
	eq := func(x, y Xattr) bool { return bytes.Equal(x.RawName(), y.RawName()) && bytes.Equal(x.Value, y.Value) }
	if slices.EqualFunc(a, b, eq) {
		return true
	}
	byName := func(x, y Xattr) int {
		if c := bytes.Compare(x.RawName(), y.RawName()); c != 0 {
			return c
		}
		return bytes.Compare(x.Value, y.Value)
	}
	a, b = slices.Clone(a), slices.Clone(b)
	slices.SortFunc(a, byName)
	slices.SortFunc(b, byName)
	return slices.EqualFunc(a, b, eq)
}
