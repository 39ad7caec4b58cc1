package main_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/testkit"
)

// TestHistory covers log, ls and diff over two versions of one dataset and
// one version of another.
func TestHistory(t *testing.T) {
	t.Parallel()
	e := newVault(t)
	rng := newRand(t)
	src := filepath.Join(t.TempDir(), "images")
	testkit.WriteFile(t, filepath.Join(src, "keep.txt"), textBytes(rng, 10_000))
	testkit.WriteFile(t, filepath.Join(src, "change.bin"), testkit.RandomBytes(rng.Uint64(), 50_000))
	testkit.WriteFile(t, filepath.Join(src, "remove.txt"), textBytes(rng, 3000))
	testkit.WriteFile(t, filepath.Join(src, "gone/dir/a.txt"), textBytes(rng, 3000))
	testkit.WriteFile(t, filepath.Join(src, "sub/nested.txt"), textBytes(rng, 3000))
	if err := os.Symlink("keep.txt", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "labels")
	testkit.WriteFile(t, filepath.Join(other, "labels.csv"), textBytes(rng, 2000))

	first := e.snapshot(src, "-m", "first pull")
	e.snapshot(other, "-m", "labels")
	firstFiles := scanTree(t, src)

	// Edit: one file added, one removed, one directory removed, one modified.
	testkit.WriteFile(t, filepath.Join(src, "added.txt"), []byte("new\n"))
	testkit.WriteFile(t, filepath.Join(src, "sub/added-too.txt"), []byte("new too\n"))
	if err := os.Remove(filepath.Join(src, "remove.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(src, "gone")); err != nil {
		t.Fatal(err)
	}
	testkit.WriteFile(t, filepath.Join(src, "change.bin"), testkit.RandomBytes(rng.Uint64(), 50_000))
	second := e.snapshot(src, "-m", "second pull")
	if second.Parent != first.Version {
		t.Errorf("snapshot --json parent %q, want the first version %q", second.Parent, first.Version)
	}

	t.Run("LogNewestFirstWithParent", func(t *testing.T) {
		e := e.in(t)
		r := e.ok("--json", "log")
		var raw []map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &raw); err != nil {
			t.Fatal(err)
		}
		for _, v := range raw {
			for _, k := range []string{"version", "dataset", "time", "parent", "message", "files", "bytes"} {
				if _, ok := v[k]; !ok {
					t.Errorf("log --json entry has no %q field: %v", k, v)
				}
			}
		}
		var l []logJSON
		if err := json.Unmarshal([]byte(r.stdout), &l); err != nil {
			t.Fatal(err)
		}
		if len(l) != 3 {
			t.Fatalf("log lists %d versions, want 3:\n%s", len(l), r)
		}
		for i := 1; i < len(l); i++ {
			if l[i].Time.After(l[i-1].Time) {
				t.Errorf("log is not newest first: %v before %v", l[i-1].Time, l[i].Time)
			}
		}
		if l[0].Version != second.Version || l[0].Message != "second pull" || l[0].Dataset != "images" {
			t.Errorf("newest entry %+v, want version %s of images, \"second pull\"", l[0], second.Version)
		}
		if l[0].Parent == nil || *l[0].Parent != first.Version {
			t.Errorf("second version's parent %v, want %s", l[0].Parent, first.Version)
		}
		last := l[2]
		if last.Version != first.Version || last.Parent != nil {
			t.Errorf("oldest entry %+v, want the first version with a null parent", last)
		}
		if last.Files != 5 || last.Bytes != first.Bytes {
			t.Errorf("first version: %d files, %d bytes; want 5 files, %d bytes", last.Files, last.Bytes, first.Bytes)
		}
		if time.Since(last.Time) > time.Hour || time.Since(last.Time) < 0 {
			t.Errorf("first version's time %v is not now", last.Time)
		}
	})

	t.Run("LogFiltersByDataset", func(t *testing.T) {
		e := e.in(t)
		l := e.log("--dataset", "images")
		for _, v := range l {
			if v.Dataset != "images" {
				t.Errorf("log --dataset images lists a version of %s", v.Dataset)
			}
		}
		if len(l) != 2 {
			t.Errorf("log --dataset images lists %d versions, want 2", len(l))
		}
		if l := e.log("--dataset", "nothing-here"); len(l) != 0 {
			t.Errorf("log of a dataset without versions lists %d", len(l))
		}
	})

	t.Run("LsListsEveryPath", func(t *testing.T) {
		e := e.in(t)
		var entries []struct {
			Path string `json:"path"`
			Type string `json:"type"`
			Size uint64 `json:"size"`
		}
		e.okJSON(&entries, "ls", first.Version)
		var got []string
		for _, en := range entries {
			if p := strings.Trim(en.Path, "/"); p != "" && p != "." {
				got = append(got, p)
			}
			if en.Path == "change.bin" && (en.Type != "file" || en.Size != 50_000) {
				t.Errorf("ls: change.bin is %s of %d bytes, want a file of 50000", en.Type, en.Size)
			}
		}
		slices.Sort(got)
		if want := sortedKeys(firstFiles); !slices.Equal(got, want) {
			t.Errorf("ls lists\n  %q\nwant\n  %q", got, want)
		}

		e.okJSON(&entries, "ls", second.Version[:8]+":sub")
		got = nil
		for _, en := range entries {
			got = append(got, strings.Trim(en.Path, "/"))
		}
		slices.Sort(got)
		if want := []string{"sub", "sub/added-too.txt", "sub/nested.txt"}; !slices.Equal(got, want) &&
			!slices.Equal(got, want[1:]) {
			t.Errorf("ls VERSION:sub lists %q, want %q", got, want)
		}
	})

	t.Run("DiffListsAddedRemovedModified", func(t *testing.T) {
		e := e.in(t)
		type change struct {
			Path string   `json:"path"`
			What []string `json:"what"`
		}
		var d struct {
			From     string   `json:"from"`
			To       string   `json:"to"`
			Added    []change `json:"added"`
			Removed  []change `json:"removed"`
			Modified []change `json:"modified"`
		}
		e.okJSON(&d, "diff", first.Version, second.Version)
		paths := func(cs []change, filesOnly bool) []string {
			var out []string
			for _, c := range cs {
				p := strings.Trim(c.Path, "/")
				if fi, err := os.Lstat(filepath.Join(src, p)); filesOnly && err == nil && fi.IsDir() {
					continue // a directory whose entries changed may count as modified
				}
				out = append(out, p)
			}
			slices.Sort(out)
			return out
		}
		check := func(what string, got, want []string) {
			if !slices.Equal(got, want) {
				t.Errorf("diff: %s %q, want %q", what, got, want)
			}
		}
		check("added", paths(d.Added, false), []string{"added.txt", "sub/added-too.txt"})
		check("removed", paths(d.Removed, false), []string{"gone", "gone/dir", "gone/dir/a.txt", "remove.txt"})
		check("modified", paths(d.Modified, true), []string{"change.bin"})
		for _, c := range d.Modified {
			if c.Path == "change.bin" && !slices.Contains(c.What, "content") {
				t.Errorf("diff: change.bin modified in %q, want content among them", c.What)
			}
		}
		if d.From != first.Version || d.To != second.Version {
			t.Errorf("diff from %s to %s, want %s to %s", d.From, d.To, first.Version, second.Version)
		}
		e.okJSON(&d, "diff", second.Version, second.Version)
		if len(d.Added)+len(d.Removed)+len(d.Modified) != 0 {
			t.Errorf("diff of a version with itself lists changes: %+v", d)
		}
	})

	t.Run("EightCharPrefixResolves", func(t *testing.T) {
		e := e.in(t)
		var entries []json.RawMessage
		e.okJSON(&entries, "ls", first.Version[:8])
		if len(entries) == 0 {
			t.Errorf("ls %s lists nothing", first.Version[:8])
		}
		e.ok("diff", strings.ToUpper(first.Version[:10]), second.Version[:8])
	})

	t.Run("SevenCharPrefixIsRefused", func(t *testing.T) {
		e := e.in(t)
		for _, args := range [][]string{
			{"ls", first.Version[:7]},
			{"restore", first.Version[:7], "--target", filepath.Join(t.TempDir(), "out")},
		} {
			r := e.run(args...)
			if r.code != 1 && r.code != 2 {
				t.Errorf("want exit 1 or 2, got\n%s", r)
				continue
			}
			assertFailure(t, r, r.code, "8")
		}
	})
}
