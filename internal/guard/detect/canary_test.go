package detect

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/custodyhq/custody/internal/watch"
)

func TestCanaryTouchedIsDecisive(t *testing.T) {
	c := NewCanary([]string{"/d/!0000_data.csv", "/d/sub/../!0001_notes.txt"})
	u := uid(1000)
	tests := []struct {
		name string
		in   Input
		want []Strength
	}{
		{"a modify is Decisive", ev(watch.Modify, "/d/!0000_data.csv", u, 0), []Strength{Decisive}},
		{"a close-write is Decisive", ev(watch.CloseWrite, "/d/!0000_data.csv", u, 0), []Strength{Decisive}},
		{"an attribute change is Decisive", ev(watch.Attrib, "/d/!0001_notes.txt", u, 0), []Strength{Decisive}},
		{"a delete is Decisive", ev(watch.Delete, "/d/!0000_data.csv", nil, 0), []Strength{Decisive}},
		{"a rename away is Decisive", rename("/d/!0000_data.csv", "/d/!0000_data.csv.locked", u, 0), []Strength{Decisive}},
		{"a rename over it is Decisive", rename("/d/x.tmp", "/d/!0000_data.csv", u, 0), []Strength{Decisive}},
		{"a create at its path is not (the delete fired)", ev(watch.Create, "/d/!0000_data.csv", u, 0), nil},
		{"other files are not canaries", ev(watch.Delete, "/d/data.csv", u, 0), nil},
		{"a rename of other files is not", rename("/d/a.csv", "/d/b.csv", u, 0), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sigs := c.Observe(tc.in)
			if got := strengths(sigs); !slices.Equal(got, tc.want) {
				t.Fatalf("strengths %v, want %v", got, tc.want)
			}
			if len(sigs) > 0 && (sigs[0].Detector != "canary" || !strings.Contains(sigs[0].Reason, "canary")) {
				t.Errorf("signal %+v", sigs[0])
			}
		})
	}
}

func TestPlaceCanariesWritesPlausibleFilesThatSortFirst(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"0001.csv", "README.md", "_meta.json", "a.csv", "#notes", "$tmp", "Zeta.txt"} {
		os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o644)
	}
	paths, err := PlaceCanaries(dir, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 5 {
		t.Fatalf("%d paths", len(paths))
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for i, p := range paths {
		if !filepath.IsAbs(p) || filepath.Dir(p) != dir {
			t.Errorf("path %q", p)
		}
		if names[i] != filepath.Base(p) {
			t.Errorf("listing %v: canary %d is not first", names, i)
		}
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != 0o644 || fi.Size() < 1024 {
			t.Errorf("%s: %v %v", p, fi, err)
		}
		data, _ := os.ReadFile(p)
		c := contentOf(t, filepath.Base(p), data)
		in := withContent(ev(watch.Create, p, uid(1), 0), c)
		for _, d := range []Detector{NewRandomness(), NewIntermittent(), NewRansomNote(), NewExtension()} {
			if s := d.Observe(in); s != nil {
				t.Errorf("%s fires on the canary %s: %+v", d.Name(), p, s)
			}
		}
		if !isText(data) {
			t.Errorf("%s is not text", p)
		}
	}
	if !strings.HasSuffix(paths[0], "!0000_data.csv") || !strings.HasSuffix(paths[2], "!0002_manifest.json") {
		t.Errorf("paths %v", paths)
	}
}

func TestPlaceCanariesIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	first, err := PlaceCanaries(dir, 3)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(first[0])
	again, err := PlaceCanaries(dir, 3)
	if err != nil || !slices.Equal(first, again) {
		t.Fatalf("again: %v %v", again, err)
	}
	if fi2, _ := os.Stat(first[0]); !fi2.ModTime().Equal(fi.ModTime()) {
		t.Error("an intact canary was rewritten")
	}
	more, err := PlaceCanaries(dir, 4)
	if err != nil || len(more) != 4 || !slices.Equal(more[:3], first) {
		t.Fatalf("more: %v %v", more, err)
	}
}

func TestPlaceCanariesReportsAChangedCanaryAndKeepsIt(t *testing.T) {
	dir := t.TempDir()
	paths, err := PlaceCanaries(dir, 2)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(paths[1], []byte("encrypted"), 0o644)
	again, err := PlaceCanaries(dir, 2)
	if !errors.Is(err, ErrCanaryChanged) || !strings.Contains(err.Error(), paths[1]) {
		t.Fatalf("err %v", err)
	}
	if len(again) != 2 {
		t.Errorf("paths %v", again)
	}
	if b, _ := os.ReadFile(paths[1]); string(b) != "encrypted" {
		t.Error("the changed canary was overwritten")
	}
}

func TestPlaceCanariesRefusesBadArguments(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "file")
	os.WriteFile(f, nil, 0o644)
	for name, call := range map[string]func() error{
		"zero canaries":     func() error { _, err := PlaceCanaries(dir, 0); return err },
		"too many canaries": func() error { _, err := PlaceCanaries(dir, maxCanaries+1); return err },
		"a missing dir":     func() error { _, err := PlaceCanaries(filepath.Join(dir, "nope"), 1); return err },
		"a file, not a dir": func() error { _, err := PlaceCanaries(f, 1); return err },
	} {
		if call() == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestCanaryContentDependsOnlyOnTheName(t *testing.T) {
	a, b := canaryContent("!0000_data.csv"), canaryContent("!0000_data.csv")
	if string(a) != string(b) || string(a) == string(canaryContent("!0003_labels.csv")) {
		t.Error("content is not a function of the name")
	}
}
