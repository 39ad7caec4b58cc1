package snapshot

import (
	"context"
	"errors"
	"io/fs"
	"slices"
	"strings"
	"testing"
)

func walkFixture(t *testing.T) (*memBlobs, []ent) {
	b := newMemBlobs()
	ents := []ent{
		{path: "a/b/c.txt", chunks: []string{"abc"}},
		{path: "a/b/d", dir: true, mode: 0o700},
		{path: "a/z", target: "b/c.txt"},
		{path: "top", chunks: []string{"x"}},
		{path: "\xff\nodd", chunks: []string{"y"}},
		{path: "empty", dir: true},
	}
	return b, ents
}

func TestLookupResolvesPathsNameByName(t *testing.T) {
	b, ents := walkFixture(t)
	root := buildTree(t, b, ents...)
	ctx := context.Background()
	for _, tc := range []struct {
		sub      string
		typ      NodeType
		name     string
		notFound bool
	}{
		{sub: "", typ: TypeDir},
		{sub: ".", typ: TypeDir},
		{sub: "/", typ: TypeDir},
		{sub: "a", typ: TypeDir, name: "a"},
		{sub: "a/b/", typ: TypeDir, name: "b"},
		{sub: "./a//b/c.txt", typ: TypeFile, name: "c.txt"},
		{sub: "a/z", typ: TypeSymlink, name: "z"},
		{sub: "\xff\nodd", typ: TypeFile, name: "\xff\nodd"},
		{sub: "missing", notFound: true},
		{sub: "a/missing", notFound: true},
		{sub: "a/../top", notFound: true},
		{sub: "top/x", notFound: true},     // through a file
		{sub: "a/z/c.txt", notFound: true}, // symlinks are not followed
	} {
		n, err := Lookup(ctx, b, root, tc.sub)
		if tc.notFound {
			if !errors.Is(err, ErrPathNotFound) {
				t.Errorf("Lookup(%q) = %v, want ErrPathNotFound", tc.sub, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Lookup(%q): %v", tc.sub, err)
			continue
		}
		if n.Type != tc.typ || string(n.RawName()) != tc.name {
			t.Errorf("Lookup(%q) = %s %q, want %s %q", tc.sub, n.Type, n.RawName(), tc.typ, tc.name)
		}
	}
	if n, _ := Lookup(ctx, b, root, ""); n.Subtree == nil || *n.Subtree != root {
		t.Errorf("Lookup of the root does not point at the root tree")
	}
}

func TestLookupErrorNamesThePath(t *testing.T) {
	b, ents := walkFixture(t)
	root := buildTree(t, b, ents...)
	_, err := Lookup(context.Background(), b, root, "a/nope")
	if err == nil || !strings.Contains(err.Error(), `"a/nope"`) {
		t.Fatalf("error %v does not name the path", err)
	}
}

func TestWalkVisitsDepthFirstInSortedOrder(t *testing.T) {
	b, ents := walkFixture(t)
	root := buildTree(t, b, ents...)
	for _, tc := range []struct {
		sub  string
		skip string // return fs.SkipDir here
		want []string
	}{
		{sub: "", want: []string{"a", "a/b", "a/b/c.txt", "a/b/d", "a/z", "empty", "top", "\xff\nodd"}},
		{sub: "a", want: []string{"a", "a/b", "a/b/c.txt", "a/b/d", "a/z"}},
		{sub: "a/b/c.txt", want: []string{"a/b/c.txt"}},
		{sub: "a/z", want: []string{"a/z"}},
		{sub: "", skip: "a/b", want: []string{"a", "a/b", "a/z", "empty", "top", "\xff\nodd"}},
		{sub: "", skip: "a/b/c.txt", want: []string{"a", "a/b", "a/b/c.txt", "a/z", "empty", "top", "\xff\nodd"}},
		{sub: "a", skip: "a", want: []string{"a"}},
	} {
		var got []string
		err := Walk(context.Background(), b, root, tc.sub, func(p string, n *Node) error {
			got = append(got, p)
			if p == tc.skip {
				return fs.SkipDir
			}
			return nil
		})
		if err != nil {
			t.Errorf("Walk(%q): %v", tc.sub, err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("Walk(%q, skip %q) visited %q, want %q", tc.sub, tc.skip, got, tc.want)
		}
	}
}

func TestWalkStopsOnSkipAllAndErrors(t *testing.T) {
	b, ents := walkFixture(t)
	root := buildTree(t, b, ents...)
	var n int
	err := Walk(context.Background(), b, root, "", func(string, *Node) error {
		if n++; n == 3 {
			return fs.SkipAll
		}
		return nil
	})
	if err != nil || n != 3 {
		t.Errorf("SkipAll: err %v after %d calls, want nil after 3", err, n)
	}
	boom := errors.New("boom")
	err = Walk(context.Background(), b, root, "a", func(p string, _ *Node) error {
		if p == "a/b/c.txt" {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Errorf("Walk returned %v, want fn's error", err)
	}
	if err := Walk(context.Background(), b, root, "nope", nil); !errors.Is(err, ErrPathNotFound) {
		t.Errorf("Walk of a missing path: %v", err)
	}
}
