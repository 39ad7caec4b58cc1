package main

import (
	"bytes"
	"crypto/sha256"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// treeDigest maps each file's relative path to the SHA-256 of its content.
func treeDigest(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = sha256.Sum256(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func gen(t *testing.T, args ...string) {
	t.Helper()
	if err := run(args, io.Discard); err != nil {
		t.Fatalf("gen %s: %v", strings.Join(args, " "), err)
	}
}

func TestSameSeedGivesIdenticalTrees(t *testing.T) {
	for _, kind := range []string{"mixed", "small"} {
		t.Run(kind, func(t *testing.T) {
			a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
			scale := []string{"--size", "4MiB"}
			if kind == "small" {
				scale = []string{"--count", "300"}
			}
			for _, dir := range []string{a, b} {
				gen(t, append([]string{kind, dir}, scale...)...)
				gen(t, "append", dir, "--files", "5", "--bytes", "3000", "--seed", "7")
			}
			da, db := treeDigest(t, a), treeDigest(t, b)
			if len(da) == 0 || len(da) != len(db) {
				t.Fatalf("trees differ in file count: %d vs %d", len(da), len(db))
			}
			for p, h := range da {
				if db[p] != h {
					t.Errorf("%s differs between two runs with the same seed", p)
				}
			}
		})
	}
}

func TestMixedHitsTotalSizeAndHalfIsText(t *testing.T) {
	const total = 32 << 20
	specs, _ := planMixed(total, 1)
	var st stats
	for _, f := range specs {
		if f.size < minMixedFile || f.size > maxMixedFile {
			t.Errorf("%s: size %d outside [64 KiB, 6 MiB]", f.path, f.size)
		}
		st.add(f)
	}
	if got := st.randomBytes + st.textBytes; got != total {
		t.Errorf("total = %d, want %d", got, total)
	}
	if frac := float64(st.textBytes) / total; frac < 0.4 || frac > 0.6 {
		t.Errorf("text fraction = %.2f, want about one half", frac)
	}
}

func TestAppendGrowsChosenFilesOnly(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tree")
	gen(t, "small", dir, "--count", "50")
	before := treeDigest(t, dir)
	gen(t, "append", dir, "--files", "4", "--bytes", "1000")
	changed := 0
	for p, h := range treeDigest(t, dir) {
		if before[p] != h {
			changed++
		}
	}
	if changed != 4 {
		t.Errorf("append changed %d files, want 4", changed)
	}
}

func TestTextHasWholeLinesAcrossBuffers(t *testing.T) {
	v := newVocabulary(1)
	f := fileSpec{size: 10000, text: true, style: styleLog}
	fill := contentFor(f, v, 1, "t", false)
	var out []byte
	for range 50 {
		b := make([]byte, 200) // shorter than some lines
		fill(b)
		out = append(out, b...)
	}
	lines := bytes.Split(out, []byte("\n"))
	for _, l := range lines[:len(lines)-1] {
		if !bytes.HasPrefix(l, []byte("20")) || !bytes.Contains(l, []byte("latency_ms=")) {
			t.Fatalf("broken line %q", l)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"65536": 65536, "64KiB": 64 << 10, "64MiB": 64 << 20, "1GiB": 1 << 30, "1G": 1 << 30, "1.5MiB": 3 << 19,
	} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if _, err := parseSize("lots"); err == nil {
		t.Error(`parseSize("lots") succeeded`)
	}
}

func TestRefusesNonEmptyDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"small", dir, "--count", "3"}, io.Discard); err == nil {
		t.Error("gen small into a non-empty directory succeeded")
	}
}
