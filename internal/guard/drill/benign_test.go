package drill

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/csv"
	"encoding/json"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestBenignWorkloadsRunToCompletion(t *testing.T) {
	const scale = 60
	tests := []struct {
		name  string
		check func(t *testing.T, dir string)
	}{
		{ExtractTar, func(t *testing.T, dir string) {
			paths, _ := regularFiles(t, filepath.Join(dir, "extract"))
			if len(paths) != scale {
				t.Errorf("extracted %d files, want %d", len(paths), scale)
			}
			fi, err := os.Stat(filepath.Join(dir, "extract/project-1.0/scripts/run0000.sh"))
			if err != nil || fi.Mode().Perm() != 0o755 || fi.ModTime().Year() != 2024 {
				t.Errorf("script not extracted with its mode and mtime: %v %v", fi, err)
			}
		}},
		{GzipMany, func(t *testing.T, dir string) {
			paths, files := regularFiles(t, filepath.Join(dir, "gzip"))
			if len(paths) != scale {
				t.Errorf("%d files, want %d", len(paths), scale)
			}
			for _, p := range paths {
				if !strings.HasSuffix(p, ".csv.gz") || !bytes.HasPrefix(files[p], []byte{0x1f, 0x8b}) {
					t.Fatalf("%s is not a gzip'd CSV", p)
				}
			}
		}},
		{Checkpoints, func(t *testing.T, dir string) {
			paths, files := regularFiles(t, filepath.Join(dir, "checkpoints"))
			if len(paths) != 4 {
				t.Errorf("checkpoint files %v, want 4 (no temp files left)", paths)
			}
			for _, name := range []string{"model.safetensors", "model-fp16.safetensors"} {
				checkSafetensors(t, files[filepath.Join(dir, "checkpoints", name)])
			}
			checkNPY(t, files[filepath.Join(dir, "checkpoints", "embeddings.npy")])
		}},
		{PackageCache, func(t *testing.T, dir string) {
			paths, files := regularFiles(t, filepath.Join(dir, "cache"))
			if len(paths) != scale {
				t.Errorf("%d cache files, want %d", len(paths), scale)
			}
			for _, p := range paths {
				magic := []byte{0x1f, 0x8b}
				if strings.HasSuffix(p, ".whl") {
					magic = []byte("PK\x03\x04")
				}
				if !bytes.HasPrefix(files[p], magic) {
					t.Fatalf("%s does not start with %q", p, magic)
				}
			}
		}},
		{GitCheckout, func(t *testing.T, dir string) {
			repos, _ := filepath.Glob(filepath.Join(dir, "repo-*"))
			if len(repos) != 1 {
				t.Fatalf("repositories %v, want 1", repos)
			}
			out, err := exec.Command("git", "-C", repos[0], "-c", "safe.directory=*", "branch", "--show-current").Output()
			if err != nil || strings.TrimSpace(string(out)) != "b" {
				t.Errorf("current branch %q (%v), want b", out, err)
			}
		}},
		{CleanCSV, func(t *testing.T, dir string) {
			paths, files := regularFiles(t, dir)
			for _, p := range paths {
				if strings.Contains(p, ".tmp") {
					t.Errorf("temp file left: %s", p)
				}
				if filepath.Ext(p) != ".csv" {
					continue
				}
				rows, err := csv.NewReader(bytes.NewReader(files[p])).ReadAll()
				if err != nil {
					t.Fatalf("%s: %v", p, err)
				}
				if l := rows[1][4]; l != strings.ToUpper(l) {
					t.Fatalf("%s: label %q not upper-cased", p, l)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.name == GitCheckout {
				if _, err := exec.LookPath("git"); err != nil {
					t.Skip("no git")
				}
			}
			dir, _, _ := tree(t, 50)
			if err := Benign(context.Background(), tt.name, dir, scale); err != nil {
				t.Fatal(err)
			}
			tt.check(t, dir)
		})
	}
}

func TestBenignRejectsUnknownWorkload(t *testing.T) {
	err := Benign(context.Background(), "mine-bitcoin", t.TempDir(), 1)
	if err == nil || !strings.Contains(err.Error(), GzipMany) {
		t.Errorf("err = %v, want one listing the workloads", err)
	}
}

func TestCleanCSVNeedsCSVs(t *testing.T) {
	err := Benign(context.Background(), CleanCSV, t.TempDir(), 1)
	if err == nil || !strings.Contains(err.Error(), "run prepare") {
		t.Errorf("err = %v, want a hint to run prepare", err)
	}
}

func TestPrepareIsDeterministic(t *testing.T) {
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	for _, d := range []string{a, b} {
		if err := Prepare(d, 150, 42); err != nil {
			t.Fatal(err)
		}
	}
	pa, fa := regularFiles(t, a)
	_, fb := regularFiles(t, b)
	if len(pa) != 150 {
		t.Fatalf("%d files, want 150", len(pa))
	}
	kinds := map[string]int{}
	for _, p := range pa {
		rel, _ := filepath.Rel(a, p)
		kinds[filepath.Ext(p)]++
		if !bytes.Equal(fa[p], fb[filepath.Join(b, rel)]) {
			t.Fatalf("%s differs between runs with one seed", rel)
		}
		switch filepath.Ext(p) {
		case ".png":
			if _, err := png.Decode(bytes.NewReader(fa[p])); err != nil {
				t.Errorf("%s: %v", rel, err)
			}
		case ".npy":
			checkNPY(t, fa[p])
		case ".jsonl":
			line, _, _ := bytes.Cut(fa[p], []byte("\n"))
			if !json.Valid(line) {
				t.Errorf("%s: first line is not JSON", rel)
			}
		}
	}
	for _, ext := range []string{".md", ".csv", ".jsonl", ".npy", ".png"} {
		if kinds[ext] == 0 {
			t.Errorf("no %s files in %v", ext, kinds)
		}
	}
}

func checkSafetensors(t *testing.T, b []byte) {
	t.Helper()
	n := binary.LittleEndian.Uint64(b)
	var hdr map[string]json.RawMessage
	if n%8 != 0 || json.Unmarshal(b[8:8+n], &hdr) != nil {
		t.Fatalf("bad safetensors header (length %d)", n)
	}
	var end int64
	for name, raw := range hdr {
		if name == "__metadata__" {
			continue
		}
		var e struct {
			DataOffsets [2]int64 `json:"data_offsets"`
		}
		json.Unmarshal(raw, &e)
		end = max(end, e.DataOffsets[1])
	}
	if int64(len(b)) != 8+int64(n)+end {
		t.Errorf("file is %d bytes, header says %d", len(b), 8+int64(n)+end)
	}
}

func checkNPY(t *testing.T, b []byte) {
	t.Helper()
	if !bytes.HasPrefix(b, []byte("\x93NUMPY\x01\x00")) {
		t.Fatal("no .npy magic")
	}
	hlen := int(binary.LittleEndian.Uint16(b[8:]))
	hdr := string(b[10 : 10+hlen])
	if (10+hlen)%64 != 0 || !strings.HasSuffix(hdr, "\n") || !strings.Contains(hdr, "'descr': '<f4'") {
		t.Fatalf("bad .npy header %q", hdr)
	}
	if (len(b)-10-hlen)%4 != 0 {
		t.Errorf("data is not whole float32s")
	}
}

func TestFloat16(t *testing.T) {
	tests := []struct {
		in   float32
		want uint16
	}{
		{0, 0x0000},
		{1, 0x3c00},
		{-2, 0xc000},
		{0.5, 0x3800},
		{0.1, 0x2e66},
		{65504, 0x7bff},
		{1e6, 0x7c00},
		{float32(math.Inf(-1)), 0xfc00},
		{float32(math.NaN()), 0x7e00},
		{0x1p-24, 0x0001},   // smallest subnormal
		{0x1p-25, 0x0000},   // a tie, to even
		{0x1.8p-24, 0x0002}, // a tie, to even
		{0x1p-14, 0x0400},   // smallest normal
	}
	for _, tt := range tests {
		if got := float16(tt.in); got != tt.want {
			t.Errorf("float16(%v) = %#04x, want %#04x", tt.in, got, tt.want)
		}
	}
}
