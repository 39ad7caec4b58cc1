package drill

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Benign workloads: heavy, legitimate work that looks like an attack to a
// naive detector.
const (
	ExtractTar   = "extract-tar"   // a source tarball unpacked into dir/extract
	GzipMany     = "gzip-many"     // the gzip binary over many CSVs in dir/gzip (write X.gz, unlink X)
	Checkpoints  = "checkpoints"   // model checkpoints in dir/checkpoints, saved and replaced every epoch
	PackageCache = "package-cache" // compressed archives filling dir/cache like pip's cache
	GitCheckout  = "git-checkout"  // a git repository under dir switched between two branches
	CleanCSV     = "clean-csv"     // every CSV under dir rewritten via temp file and rename
)

// Workloads lists every benign workload.
var Workloads = []string{ExtractTar, GzipMany, Checkpoints, PackageCache, GitCheckout, CleanCSV}

// DefaultScale is the workloads' default size, about a number of files.
const DefaultScale = 2000

// Benign runs the named workload in dir at the given scale (about a number
// of files; 0 is DefaultScale) and returns when it is done or ctx ends.
func Benign(ctx context.Context, name, dir string, scale int) error {
	if scale <= 0 {
		scale = DefaultScale
	}
	run := map[string]func(context.Context, string, int) error{
		ExtractTar:   extractTar,
		GzipMany:     gzipMany,
		Checkpoints:  checkpoints,
		PackageCache: packageCache,
		GitCheckout:  gitCheckout,
		CleanCSV:     cleanCSV,
	}[name]
	if run == nil {
		return fmt.Errorf("drill: unknown workload %q (want one of %s)", name, strings.Join(Workloads, ", "))
	}
	if err := run(ctx, dir, scale); err != nil {
		return fmt.Errorf("drill: %s: %w", name, err)
	}
	return nil
}

// extractTar builds a tarball of source-like files in memory and unpacks it
// with the tar binary, or with archive/tar the way tar does (modes, mtimes)
// when there is none.
func extractTar(ctx context.Context, dir string, scale int) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	r := mrand.New(mrand.NewPCG(uint64(scale), 1))
	mtime := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := range scale {
		body := sourceFile(r, i)
		mode := int64(0o644)
		name := fmt.Sprintf("project-1.0/src/pkg%02d/file%04d.go", i%40, i)
		if i%25 == 0 {
			mode, name = 0o755, fmt.Sprintf("project-1.0/scripts/run%04d.sh", i)
		}
		hdr := &tar.Header{Name: name, Mode: mode, Size: int64(len(body)), ModTime: mtime, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(body); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	dst := filepath.Join(dir, "extract")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	if bin, err := exec.LookPath("tar"); err == nil {
		cmd := exec.CommandContext(ctx, bin, "-xf", "-", "-C", dst)
		cmd.Stdin = &buf
		return runCmd(cmd)
	}
	return untar(ctx, &buf, dst)
}

// untar extracts regular files, creating parents, then sets modes and
// mtimes as tar does.
func untar(ctx context.Context, r io.Reader, dst string) error {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		p := filepath.Join(dst, filepath.FromSlash(hdr.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fs.FileMode(hdr.Mode).Perm())
		if err != nil {
			return err
		}
		_, err = io.Copy(f, tr)
		if err = errors.Join(err, f.Close()); err != nil {
			return err
		}
		if err := os.Chtimes(p, hdr.ModTime, hdr.ModTime); err != nil {
			return err
		}
	}
}

// sourceFile returns a Go-looking source file of 20-120 lines.
func sourceFile(r *mrand.Rand, i int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "// Package pkg%02d is generated.\npackage pkg%02d\n\nimport \"fmt\"\n\n", i%40, i%40)
	for j := range 5 + r.IntN(25) {
		fmt.Fprintf(&b, "// F%d_%d %s.\nfunc F%d_%d(x int) string {\n\treturn fmt.Sprint(x * %d)\n}\n\n",
			i, j, phrase(r, 4), i, j, r.IntN(1000))
	}
	return b.Bytes()
}

// gzipMany writes scale CSVs into dir/gzip and runs the gzip binary over
// them in batches: gzip writes X.gz and unlinks X, which is what
// copy-delete ransomware looks like.
func gzipMany(ctx context.Context, dir string, scale int) error {
	bin, err := exec.LookPath("gzip")
	if err != nil {
		return errors.New("no gzip binary found: install gzip")
	}
	dst := filepath.Join(dir, "gzip")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	r := mrand.New(mrand.NewPCG(uint64(scale), 2))
	var batch []string
	for i := range scale {
		p := filepath.Join(dst, fmt.Sprintf("log-%05d.csv", i))
		if err := writeFile(p, func(w io.Writer) error { return writeCSV(w, r) }); err != nil {
			return err
		}
		batch = append(batch, p)
		if len(batch) == 200 || i == scale-1 {
			if err := runCmd(exec.CommandContext(ctx, bin, append([]string{"-f"}, batch...)...)); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	return nil
}

// packageCache fills dir/cache the way pip does: wheels (zip archives) under
// hashed nested directories, gzip'd HTTP bodies and sdists (.tar.gz).
func packageCache(ctx context.Context, dir string, scale int) error {
	r := mrand.New(mrand.NewPCG(uint64(scale), 3))
	for i := range scale {
		if err := ctx.Err(); err != nil {
			return err
		}
		h := randomHex(20)
		var p string
		var body []byte
		var err error
		switch i % 3 {
		case 0:
			p = filepath.Join(dir, "cache", "wheels", h[0:2], h[2:4], h[4:6], h[6:], fmt.Sprintf("pkg%d-1.%d-py3-none-any.whl", i, i%10))
			body, err = wheel(r, i)
		case 1:
			p = filepath.Join(dir, "cache", "http-v2", h[0:1], h[1:2], h[2:3], h[3:4], h[4:5], h[5:]+".body")
			body, err = gzipped(sourceFile(r, i))
		default:
			p = filepath.Join(dir, "cache", "sdists", h[0:2], h[2:4], fmt.Sprintf("pkg%d-1.%d.tar.gz", i, i%10))
			body, err = sdist(r, i)
		}
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, body, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// wheel returns a zip archive with a module and its dist-info.
func wheel(r *mrand.Rand, i int) ([]byte, error) {
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	files := map[string][]byte{
		fmt.Sprintf("pkg%d/__init__.py", i):                 []byte("from .core import *\n"),
		fmt.Sprintf("pkg%d/core.py", i):                     sourceFile(r, i),
		fmt.Sprintf("pkg%d-1.0.dist-info/METADATA", i):      fmt.Appendf(nil, "Metadata-Version: 2.1\nName: pkg%d\nVersion: 1.0\n", i),
		fmt.Sprintf("pkg%d-1.0.dist-info/WHEEL", i):         []byte("Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"),
		fmt.Sprintf("pkg%d-1.0.dist-info/top_level.txt", i): fmt.Appendf(nil, "pkg%d\n", i),
	}
	for name, body := range files {
		w, err := zw.Create(name)
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(body); err != nil {
			return nil, err
		}
	}
	err := zw.Close()
	return b.Bytes(), err
}

// sdist returns a gzip'd tarball with a setup.py and a module.
func sdist(r *mrand.Rand, i int) ([]byte, error) {
	var t bytes.Buffer
	tw := tar.NewWriter(&t)
	for _, f := range []struct {
		name string
		body []byte
	}{
		{fmt.Sprintf("pkg%d-1.0/setup.py", i), fmt.Appendf(nil, "from setuptools import setup\nsetup(name='pkg%d')\n", i)},
		{fmt.Sprintf("pkg%d-1.0/pkg%d/core.py", i, i), sourceFile(r, i)},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), ModTime: time.Now()}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return gzipped(t.Bytes())
}

func gzipped(p []byte) ([]byte, error) {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(p); err != nil {
		return nil, err
	}
	err := zw.Close()
	return b.Bytes(), err
}

func randomHex(n int) string {
	b := make([]byte, (n+1)/2)
	rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

// cleanCSV rewrites every CSV under dir like a pandas job: parse, trim
// every field, upper-case the label column, write a temp file beside the
// original and rename it over.
func cleanCSV(ctx context.Context, dir string, _ int) error {
	seen := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() || !d.Type().IsRegular() || filepath.Ext(p) != ".csv" {
			return nil
		}
		seen++
		return rewriteCSV(p)
	})
	if err == nil && seen == 0 {
		err = fmt.Errorf("no CSV files under %s: run prepare first", dir)
	}
	return err
}

func rewriteCSV(p string) error {
	in, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	cr := csv.NewReader(bytes.NewReader(in))
	cr.FieldsPerRecord = -1
	rows, err := cr.ReadAll()
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	label := -1
	for i, row := range rows {
		for j := range row {
			row[j] = strings.TrimSpace(row[j])
			if i == 0 && row[j] == "label" {
				label = j
			}
		}
		if i > 0 && label >= 0 && label < len(row) {
			row[label] = strings.ToUpper(row[label])
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+".tmp*")
	if err != nil {
		return err
	}
	cw := csv.NewWriter(tmp)
	err = cw.WriteAll(rows)
	if err = errors.Join(err, tmp.Chmod(0o644), tmp.Close()); err == nil {
		err = os.Rename(tmp.Name(), p)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// runCmd runs cmd and folds its stderr into the error.
func runCmd(cmd *exec.Cmd) error {
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", filepath.Base(cmd.Path), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
