package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/custodyhq/custody/internal/vault"
)

// ErrPathNotFound is wrapped when a path does not name an entry of a version.
var ErrPathNotFound = errors.New("path not found in version")

// loadTree loads and validates the tree id.
func loadTree(ctx context.Context, blobs Blobs, id vault.ID) (*Tree, error) {
	b, err := blobs.LoadBlob(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("load tree %s: %w", id.Short(), err)
	}
	t, err := DecodeTree(b)
	if err != nil {
		return nil, fmt.Errorf("tree %s: %w", id.Short(), err)
	}
	return t, nil
}

// splitSub splits a "/"-separated path inside a version into its names,
// dropping empty and "." components, so "", ".", "/" and "a//b/" work.
// ".." is kept: no entry has that name, so it is simply not found.
func splitSub(sub string) []string {
	var parts []string
	for p := range strings.SplitSeq(sub, "/") {
		if p != "" && p != "." {
			parts = append(parts, p)
		}
	}
	return parts
}

// childPath is the version-relative path of name in the directory dir.
func childPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// Lookup resolves sub, a "/"-separated path relative to the root of the
// version whose root tree is tree, one name at a time. "" and "." name
// the root itself, returned as a synthetic directory node with no name or
// metadata whose Subtree is tree.
func Lookup(ctx context.Context, blobs Blobs, tree vault.ID, sub string) (*Node, error) {
	root := tree
	n := &Node{Type: TypeDir, Subtree: &root}
	parts := splitSub(sub)
	for i, name := range parts {
		if n.Type != TypeDir {
			return nil, fmt.Errorf("%q: %s is not a directory: %w", sub, strings.Join(parts[:i], "/"), ErrPathNotFound)
		}
		t, err := loadTree(ctx, blobs, *n.Subtree)
		if err != nil {
			return nil, fmt.Errorf("look up %q: %w", sub, err)
		}
		if n = t.Find([]byte(name)); n == nil {
			return nil, fmt.Errorf("%q: %w", sub, ErrPathNotFound)
		}
	}
	return n, nil
}

// Walk calls fn for every entry at or below sub, depth first, each
// directory's entries in the tree's (byte-sorted) order, a directory
// before its contents. Paths are relative to the version root,
// "/"-separated, and hold the names' raw bytes. fn is called for the entry
// sub names, but not for the version root when sub is "" or ".". If sub
// names a file or symlink, fn is called once, for it.
//
// As with fs.WalkDir, fn may return fs.SkipDir to skip a directory's
// contents (or, for a non-directory, the rest of its directory) and
// fs.SkipAll to stop; any other error stops the walk and is returned.
func Walk(ctx context.Context, blobs Blobs, tree vault.ID, sub string, fn func(path string, n *Node) error) error {
	n, err := Lookup(ctx, blobs, tree, sub)
	if err != nil {
		return err
	}
	path := strings.Join(splitSub(sub), "/")
	if path != "" {
		err := fn(path, n)
		if errors.Is(err, fs.SkipDir) || errors.Is(err, fs.SkipAll) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	if n.Type != TypeDir {
		return nil
	}
	err = walkTree(ctx, blobs, *n.Subtree, path, fn)
	if errors.Is(err, fs.SkipAll) {
		return nil
	}
	return err
}

func walkTree(ctx context.Context, blobs Blobs, id vault.ID, dir string, fn func(string, *Node) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t, err := loadTree(ctx, blobs, id)
	if err != nil {
		return fmt.Errorf("walk %q: %w", dir, err)
	}
	for i := range t.Nodes {
		n := &t.Nodes[i]
		path := childPath(dir, string(n.RawName()))
		err := fn(path, n)
		if errors.Is(err, fs.SkipDir) {
			if n.Type == TypeDir {
				continue
			}
			return nil
		}
		if err != nil {
			return err
		}
		if n.Type == TypeDir {
			if err := walkTree(ctx, blobs, *n.Subtree, path, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// WalkBlobs calls fn once for every blob the tree references: each tree
// blob (before its entries) and each file's content blobs. seen holds the
// blobs already visited and is filled as it goes; share it across calls
// (one per version) and subtrees common to them are loaded once. fn may
// be nil.
func WalkBlobs(ctx context.Context, blobs Blobs, tree vault.ID, seen map[vault.ID]bool, fn func(vault.ID) error) error {
	if seen[tree] {
		return nil
	}
	t, err := loadTree(ctx, blobs, tree)
	if err != nil {
		return err
	}
	seen[tree] = true
	if fn != nil {
		if err := fn(tree); err != nil {
			return err
		}
	}
	for i := range t.Nodes {
		n := &t.Nodes[i]
		for _, c := range n.Content {
			if seen[c] {
				continue
			}
			seen[c] = true
			if fn != nil {
				if err := fn(c); err != nil {
					return err
				}
			}
		}
		if n.Subtree != nil {
			if err := WalkBlobs(ctx, blobs, *n.Subtree, seen, fn); err != nil {
				return err
			}
		}
	}
	return nil
}
