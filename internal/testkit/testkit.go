// Package testkit holds what tests share: fixtures (random bytes, file
// trees written from a map and read back into one) and waiting for a
// condition instead of for a time.
package testkit

import (
	"encoding/binary"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// RandomBytes returns n bytes of ChaCha8 output keyed by seed, little-endian
// in the key's first eight bytes. The Go specification of ChaCha8 fixes the
// stream, so golden files (the chunker's cut points) may rely on it.
func RandomBytes(seed uint64, n int) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b)
	return b
}

// WriteFile writes data to path with mode 0644, making its parent
// directories.
func WriteFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// WriteFiles writes files, by "/"-separated path relative to dir, under dir.
func WriteFiles(t testing.TB, dir string, files map[string][]byte) {
	t.Helper()
	for name, data := range files {
		WriteFile(t, filepath.Join(dir, filepath.FromSlash(name)), data)
	}
}

// ReadTree returns the content of every regular file below root by
// "/"-separated path relative to root: the inverse of WriteFiles.
func ReadTree(t testing.TB, root string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		files[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}
