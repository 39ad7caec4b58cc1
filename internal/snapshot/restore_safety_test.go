package snapshot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/custodyhq/custody/internal/vault"
)

// TestRestoreNeverWritesOutsideTarget restores hostile versions over
// targets that a first, hostile restore (or someone else) filled with
// symlinks pointing outside, and checks that nothing outside changed.
func TestRestoreNeverWritesOutsideTarget(t *testing.T) {
	for _, tc := range []struct {
		name string
		// first builds what is in target before the restore under test,
		// given the outside directory; nil: nothing.
		first  func(outside string) []ent
		second []ent
		sub    string
		// plant runs after the first restore, to put things a version
		// cannot hold into the target.
		plant func(t *testing.T, target, outside string)
	}{
		{
			name:   "directory over a symlink to an absolute path",
			first:  func(o string) []ent { return []ent{{path: "evil", target: o}} },
			second: []ent{{path: "evil/pwned", chunks: []string{"x"}}, {path: "evil/sub/deeper", chunks: []string{"y"}}, {path: "evil", dir: true, mode: 0o777}},
		},
		{
			name:   "directory over a relative symlink that climbs out",
			first:  func(o string) []ent { return []ent{{path: "evil", target: "../outside"}} },
			second: []ent{{path: "evil/pwned", chunks: []string{"x"}}},
		},
		{
			name:   "file over a symlink to an outside file",
			first:  func(o string) []ent { return []ent{{path: "evil", target: filepath.Join(o, "victim")}} },
			second: []ent{{path: "evil", chunks: []string{"overwritten?"}, mode: 0o777}},
		},
		{
			name:   "single file restore over a symlink",
			first:  func(o string) []ent { return []ent{{path: "evil", target: filepath.Join(o, "victim")}} },
			second: []ent{{path: "d/evil", chunks: []string{"overwritten?"}}},
			sub:    "d/evil",
		},
		{
			name:  "hard link over a symlink to an outside file",
			first: func(o string) []ent { return []ent{{path: "evil", target: filepath.Join(o, "victim")}} },
			second: []ent{
				{path: "a", chunks: []string{"linked"}, ino: 5, links: 2},
				{path: "evil", chunks: []string{"linked"}, ino: 5, links: 2},
			},
		},
		{
			name:   "symlink over a symlink directory",
			first:  func(o string) []ent { return []ent{{path: "evil", target: o}} },
			second: []ent{{path: "evil", target: "somewhere"}},
		},
		{
			name: "symlink metadata is never applied to its target",
			second: []ent{{path: "l", target: "../outside/victim", mtime: 5, uid: u32(65534), gid: u32(65534),
				xattrs: []Xattr{{Name: "user.pwned", Value: []byte("1")}}}},
		},
		{
			name:   "temporary name held by a symlink",
			second: []ent{{path: "f", chunks: []string{"overwritten?"}}},
			plant: func(t *testing.T, target, o string) {
				if err := os.Symlink(filepath.Join(o, "victim"), filepath.Join(target, tempName("f"))); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name:   "resume marker held by a symlink",
			second: []ent{{path: "f", chunks: []string{"x"}}},
			plant: func(t *testing.T, target, o string) {
				if err := os.Symlink(filepath.Join(o, "victim"), filepath.Join(target, markerName)); err != nil {
					t.Fatal(err)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := tempDir(t)
			target, outside := filepath.Join(base, "target"), filepath.Join(base, "outside")
			if err := os.MkdirAll(outside, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(outside, "victim"), []byte("original"), 0o644); err != nil {
				t.Fatal(err)
			}
			before := scanDir(t, outside)
			b := newMemBlobs()
			if tc.first != nil {
				mustRestore(t, b, buildTree(t, b, tc.first(outside)...), "", target, RestoreOptions{})
			}
			if tc.plant != nil {
				if err := os.MkdirAll(target, 0o700); err != nil {
					t.Fatal(err)
				}
				tc.plant(t, target, outside)
			}
			tree := buildTree(t, b, tc.second...)
			_, err := Restore(context.Background(), b, tree, tc.sub, target, RestoreOptions{Overwrite: true})
			if err != nil {
				t.Logf("restore failed (allowed): %v", err)
			}
			if diff := cmp.Diff(before, scanDir(t, outside)); diff != "" {
				t.Errorf("restore changed the outside directory (-before +after):\n%s", diff)
			}
			if err == nil {
				got := scanDir(t, target)
				want := wantState(t, b, tree, tc.sub)
				for p, w := range want {
					if got[p].Type != w.Type || got[p].Data != w.Data {
						t.Errorf("%s: restored %s %q, want %s %q", p, got[p].Type, got[p].Data, w.Type, w.Data)
					}
				}
			}
		})
	}
}

func TestRestoreRejectsTreesWithCraftedNames(t *testing.T) {
	for _, name := range []string{`../escape`, `..`, `a/b`, `.`, ``} {
		b := newMemBlobs()
		data := saveBlob(t, b, vault.DataBlob, []byte("x"))
		raw := []byte(`{"nodes":[{"name":"` + name + `","type":"file","mode":420,"mtime":0,"ctime":0,"uid":0,"gid":0,"size":1,"content":["` + data.String() + `"]}]}`)
		tree := saveBlob(t, b, vault.TreeBlob, raw)
		base := tempDir(t)
		target := filepath.Join(base, "in", "target")
		_, err := Restore(context.Background(), b, tree, "", target, RestoreOptions{})
		if !errors.Is(err, ErrBadTree) {
			t.Errorf("name %q: Restore returned %v, want ErrBadTree", name, err)
		}
		if _, err := os.Lstat(filepath.Join(base, "escape")); err == nil {
			t.Errorf("name %q: a file appeared outside the target", name)
		}
	}
}
