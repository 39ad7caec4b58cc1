package snapshot

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func diffBase() []ent {
	return []ent{
		{path: "keep/deep/f", chunks: []string{"same"}},
		{path: "dir/file", chunks: []string{"v1"}},
		{path: "dir/link", target: "file"},
		{path: "gone/sub/x", chunks: []string{"x"}},
		{path: "meta", chunks: []string{"m"}, mode: 0o644, xattrs: []Xattr{{Name: "user.a", Value: []byte("1")}}},
		{path: "becomes-dir", chunks: []string{"f"}},
	}
}

// with returns base with the entries of path replaced (or removed when
// e is nil) and extra appended.
func with(base []ent, path string, e *ent, extra ...ent) []ent {
	var out []ent
	for _, b := range base {
		if b.path == path || strings.HasPrefix(b.path, path+"/") {
			if e != nil && b.path == path {
				out = append(out, *e)
			}
			continue
		}
		out = append(out, b)
	}
	return append(out, extra...)
}

func TestDiffReportsAddedRemovedAndModifiedPaths(t *testing.T) {
	base := diffBase()
	type result struct{ Added, Removed, Modified []string }
	for _, tc := range []struct {
		name string
		b    []ent
		want result
	}{
		{name: "identical", b: base},
		{name: "file added", b: with(base, "dir/new", nil, ent{path: "dir/new", chunks: []string{"n"}}),
			want: result{Added: []string{"dir/new"}}},
		{name: "dir removed lists everything under it", b: with(base, "gone", nil),
			want: result{Removed: []string{"gone", "gone/sub", "gone/sub/x"}}},
		{name: "content", b: with(base, "dir/file", &ent{path: "dir/file", chunks: []string{"v2"}}),
			want: result{Modified: []string{"dir/file (content)"}}},
		{name: "mode only", b: with(base, "meta", &ent{path: "meta", chunks: []string{"m"}, mode: 0o600, xattrs: base[4].xattrs}),
			want: result{Modified: []string{"meta (mode)"}}},
		{name: "owner and mtime", b: with(base, "meta", &ent{path: "meta", chunks: []string{"m"}, uid: u32(7), mtime: 5, xattrs: base[4].xattrs}),
			want: result{Modified: []string{"meta (owner,mtime)"}}},
		{name: "xattrs", b: with(base, "meta", &ent{path: "meta", chunks: []string{"m"}, xattrs: []Xattr{{Name: "user.a", Value: []byte("2")}}}),
			want: result{Modified: []string{"meta (xattrs)"}}},
		{name: "symlink target", b: with(base, "dir/link", &ent{path: "dir/link", target: "elsewhere"}),
			want: result{Modified: []string{"dir/link (target)"}}},
		{name: "file becomes a directory", b: with(base, "becomes-dir", &ent{path: "becomes-dir", dir: true}, ent{path: "becomes-dir/in", chunks: []string{"i"}}),
			want: result{Added: []string{"becomes-dir/in"}, Modified: []string{"becomes-dir (mode,type)"}}},
		{name: "ctime, inode and links alone are not changes", b: with(base, "meta", &ent{path: "meta", chunks: []string{"m"}, ino: 99, links: 3, xattrs: base[4].xattrs}),
			want: result{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newMemBlobs()
			ta, tb := buildTree(t, b, base...), buildTree(t, b, tc.b...)
			d, err := Diff(context.Background(), b, ta, tb)
			if err != nil {
				t.Fatal(err)
			}
			var got result
			for _, c := range d.Added {
				got.Added = append(got.Added, c.Path)
			}
			for _, c := range d.Removed {
				got.Removed = append(got.Removed, c.Path)
			}
			for _, c := range d.Modified {
				got.Modified = append(got.Modified, fmt.Sprintf("%s (%s)", c.Path, strings.Join(c.What, ",")))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Diff (-want +got):\n%s", diff)
			}
			// The reverse diff swaps added and removed.
			r, err := Diff(context.Background(), b, tb, ta)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Added) != len(d.Removed) || len(r.Removed) != len(d.Added) || len(r.Modified) != len(d.Modified) {
				t.Errorf("reverse diff: %d added, %d removed, %d modified; want %d, %d, %d",
					len(r.Added), len(r.Removed), len(r.Modified), len(d.Removed), len(d.Added), len(d.Modified))
			}
		})
	}
}

func TestDiffChangeKinds(t *testing.T) {
	b := newMemBlobs()
	a := buildTree(t, b, ent{path: "x", chunks: []string{"1"}}, ent{path: "y", chunks: []string{"1"}})
	c := buildTree(t, b, ent{path: "x", chunks: []string{"2"}}, ent{path: "z", chunks: []string{"1"}})
	d, err := Diff(context.Background(), b, a, c)
	if err != nil {
		t.Fatal(err)
	}
	want := &DiffResult{
		Added:    []Change{{Path: "z", Kind: "added"}},
		Removed:  []Change{{Path: "y", Kind: "removed"}},
		Modified: []Change{{Path: "x", Kind: "modified", What: []string{"content"}}},
	}
	if diff := cmp.Diff(want, d); diff != "" {
		t.Errorf("Diff (-want +got):\n%s", diff)
	}
}

func TestDiffSkipsIdenticalSubtreesWithoutLoadingThem(t *testing.T) {
	b := newMemBlobs()
	var big []ent
	for i := range 50 {
		big = append(big, ent{path: fmt.Sprintf("big/d%02d/f", i), chunks: []string{"x"}})
	}
	a := buildTree(t, b, append(big, ent{path: "small/f", chunks: []string{"1"}})...)
	c := buildTree(t, b, append(big, ent{path: "small/f", chunks: []string{"2"}})...)
	cb := &countingBlobs{Blobs: b}
	d, err := Diff(context.Background(), cb, a, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Modified) != 1 || d.Modified[0].Path != "small/f" {
		t.Errorf("Modified = %+v, want small/f", d.Modified)
	}
	// Two root trees and the two "small" trees; nothing under "big".
	if n := cb.loads.Load(); n != 4 {
		t.Errorf("Diff loaded %d blobs, want 4", n)
	}
	cb.loads.Store(0)
	if _, err := Diff(context.Background(), cb, a, a); err != nil || cb.loads.Load() != 0 {
		t.Errorf("Diff of a version with itself loaded %d blobs (err %v), want 0", cb.loads.Load(), err)
	}
}
