package local

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/backend"
	"github.com/custodyhq/custody/internal/backend/backendtest"
)

func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend { return open(t, t.TempDir()) })
}

func open(t *testing.T, dir string) *Local {
	t.Helper()
	l, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// tmpEntries lists tmp/, failing the test if it cannot be read.
func tmpEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, tmpDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestNewRefusesMissingOrNonDirectory(t *testing.T) {
	base := t.TempDir()
	missing := filepath.Join(base, "missing")
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{missing, file} {
		if _, err := New(dir); err == nil || !strings.Contains(err.Error(), dir) {
			t.Errorf("New(%s): err = %v, want an error naming the path", dir, err)
		}
	}
	if _, err := Create(file); err == nil {
		t.Errorf("Create(%s) over a file succeeded", file)
	}
}

func TestCreateMakesMissingDirectories(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b", "vault")
	l, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Location() != dir {
		t.Errorf("Location() = %q, want %q", l.Location(), dir)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != dirMode {
		t.Errorf("vault directory: %v, %v; want mode %v", fi, err, fs.FileMode(dirMode))
	}
}

func TestFilesLandInTheDocumentedLayout(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir)
	const pack = "ab12cd"
	tests := []struct {
		h    backend.Handle
		path string
	}{
		{backend.Handle{Kind: backend.Marker}, "custody-vault"},
		{backend.Handle{Kind: backend.Config}, "config"},
		{backend.Handle{Kind: backend.Packs, Name: pack}, "data/ab/ab12cd"},
		{backend.Handle{Kind: backend.Keys, Name: "k1"}, "keys/k1"},
		{backend.Handle{Kind: backend.Index, Name: "i1"}, "index/i1"},
		{backend.Handle{Kind: backend.Versions, Name: "v1"}, "versions/v1"},
		{backend.Handle{Kind: backend.Pending, Name: "p1"}, "pending/p1"},
	}
	for _, tt := range tests {
		if err := l.Put(context.Background(), tt.h, []byte(tt.path)); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, filepath.FromSlash(tt.path))
		data, err := os.ReadFile(path)
		if err != nil || string(data) != tt.path {
			t.Errorf("%s: read %s = %q, %v", tt.h, path, data, err)
			continue
		}
		// Mode bits, not a write attempt: tests may run as root, who may write anyway.
		if fi, _ := os.Stat(path); fi.Mode().Perm() != fileMode {
			t.Errorf("%s: mode %v, want %v so nothing rewrites it", path, fi.Mode().Perm(), fs.FileMode(fileMode))
		}
	}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && path != dir {
			if fi, _ := d.Info(); fi.Mode().Perm()&0o077 != 0 {
				t.Errorf("folder %s has mode %v; others must not read the vault", path, fi.Mode().Perm())
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if left := tmpEntries(t, dir); len(left) != 0 {
		t.Errorf("tmp/ still holds %v after successful Puts", left)
	}
}

func TestCrashLeftoversAreInvisibleAndRemovedWhenStale(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir)
	ctx := context.Background()
	if err := os.MkdirAll(filepath.Join(dir, tmpDir), dirMode); err != nil {
		t.Fatal(err)
	}
	// Names a kind would accept, as a Put killed before its link leaves them.
	stale := filepath.Join(dir, tmpDir, "STALE")
	fresh := filepath.Join(dir, tmpDir, "FRESH")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("half an obj"), fileMode); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}

	for _, kind := range backend.Kinds() {
		err := l.List(ctx, kind, func(info backend.Info) error {
			t.Errorf("List(%s) reported %s", kind, info.Handle)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if !kind.Singleton() {
			if _, err := l.Get(ctx, backend.Handle{Kind: kind, Name: "STALE"}); !errors.Is(err, backend.ErrNotFound) {
				t.Errorf("Get(%s/STALE): err = %v, want ErrNotFound", kind, err)
			}
		}
	}

	removed, err := l.RemoveStaleTemp(ctx, time.Hour)
	if err != nil || removed != 1 {
		t.Fatalf("RemoveStaleTemp = %d, %v; want 1, nil", removed, err)
	}
	if left := tmpEntries(t, dir); len(left) != 1 || left[0] != "FRESH" {
		t.Errorf("tmp/ holds %v, want only the fresh file, which may belong to a Put in progress", left)
	}
}

func TestRemoveStaleTempWithoutTmpFolder(t *testing.T) {
	l := open(t, t.TempDir())
	if n, err := l.RemoveStaleTemp(context.Background(), 0); n != 0 || err != nil {
		t.Errorf("RemoveStaleTemp on a fresh vault = %d, %v", n, err)
	}
}

func TestFullDiskLeavesNoTempFileAndSaysSo(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir)
	l.writeData = func(f *os.File, data []byte) error {
		if _, err := f.Write(data[:len(data)/2]); err != nil {
			return err
		}
		return &fs.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	h := backend.Handle{Kind: backend.Packs, Name: "ff00"}
	err := l.Put(context.Background(), h, make([]byte, 1000))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Put on a full disk: err = %v, want ENOSPC", err)
	}
	for _, want := range []string{"disk is full", h.String(), dir} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if left := tmpEntries(t, dir); len(left) != 0 {
		t.Errorf("tmp/ still holds %v after a failed Put", left)
	}
	l.writeData = writeAll
	if _, err := l.Stat(context.Background(), h); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("Stat after failed Put: err = %v, want ErrNotFound", err)
	}
	if err := l.Put(context.Background(), h, []byte("retry")); err != nil {
		t.Errorf("Put after the disk has space again: %v", err)
	}
}

func TestPutFailsCleanlyWhenTmpIsNotAFolder(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir)
	if err := os.WriteFile(filepath.Join(dir, tmpDir), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	h := backend.Handle{Kind: backend.Index, Name: "i1"}
	if err := l.Put(context.Background(), h, []byte("x")); err == nil {
		t.Fatal("Put succeeded with tmp/ a file")
	}
	if _, err := os.Stat(filepath.Join(dir, "index", "i1")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("failed Put left index/i1: %v", err)
	}
}

func TestSymlinkOutOfTheVaultIsRefused(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "index")); err != nil {
		t.Skip("cannot create symlinks here:", err)
	}
	l := open(t, dir)
	ctx := context.Background()
	if err := l.Put(ctx, backend.Handle{Kind: backend.Index, Name: "planted"}, []byte("x")); err == nil {
		t.Error("Put through a symlink out of the vault succeeded")
	}
	if _, err := l.Get(ctx, backend.Handle{Kind: backend.Index, Name: "secret"}); err == nil {
		t.Error("Get through a symlink out of the vault succeeded")
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 1 {
		t.Errorf("the folder outside the vault now holds %d entries", len(entries))
	}
}

func TestListSkipsWhatCannotBeAnObject(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir)
	ctx := context.Background()
	for _, p := range []string{"data/ab/cd99", "data/abc/abc1", "data/ab/a b", "index/sub/x"} {
		p = filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(p), dirMode); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, fileMode); err != nil {
			t.Fatal(err)
		}
	}
	for _, kind := range []backend.Kind{backend.Packs, backend.Index} {
		err := l.List(ctx, kind, func(info backend.Info) error {
			t.Errorf("List(%s) reported stray %s", kind, info.Handle)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// A folder is not an object, even where one could be.
	if err := l.Delete(ctx, backend.Handle{Kind: backend.Index, Name: "sub"}); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("Delete(index/sub) on a folder: err = %v, want ErrNotFound", err)
	}
}

func TestTempFilesInUseAreSparedAndForeignFilesRefused(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir)
	ctx := context.Background()
	f, err := l.CreateTemp()
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(f.Name(), old, old); err != nil {
		t.Fatal(err)
	}
	// A pack waiting long for its next blob must survive cleanup.
	if n, err := l.RemoveStaleTemp(ctx, time.Hour); n != 0 || err != nil {
		t.Errorf("RemoveStaleTemp removed %d files (err %v) while one was in use", n, err)
	}
	l.DiscardTemp(f)
	if left := tmpEntries(t, dir); len(left) != 0 {
		t.Errorf("tmp/ holds %v after DiscardTemp", left)
	}

	foreign, err := os.Create(filepath.Join(t.TempDir(), "foreign"))
	if err != nil {
		t.Fatal(err)
	}
	h := backend.Handle{Kind: backend.Packs, Name: "ab01"}
	if err := l.PutFile(ctx, h, foreign); err == nil {
		t.Error("PutFile linked a file CreateTemp did not make")
	}
	if _, err := l.Stat(ctx, h); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("Stat after refused PutFile: err = %v, want ErrNotFound", err)
	}
}
