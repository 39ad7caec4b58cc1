package testkit

import (
	"bytes"
	"encoding/hex"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// The first bytes for seeds below 256 are those of rand.NewChaCha8([32]byte{seed}),
// which the chunker's golden cut points were made from.
func TestRandomBytesKeepsItsStream(t *testing.T) {
	tests := []struct {
		seed   uint64
		prefix string
	}{
		{0, "d9877ece6d368aac1a6f419ec627c76b"},
		{7, "0e42d4cae8864908e0b8c7520e360aa4"},
		{255, "01d830f836c1adc45b8be637dd567a98"},
		{1<<40 | 3, "ca523f490a5d710863b92567ae7cc628"},
	}
	for _, tt := range tests {
		if got := hex.EncodeToString(RandomBytes(tt.seed, 16)); got != tt.prefix {
			t.Errorf("RandomBytes(%d, 16) = %s, want %s", tt.seed, got, tt.prefix)
		}
		long := RandomBytes(tt.seed, 1000)
		if short := RandomBytes(tt.seed, 13); !bytes.HasPrefix(long, short) {
			t.Errorf("RandomBytes(%d, 13) is not a prefix of RandomBytes(%d, 1000)", tt.seed, tt.seed)
		}
	}
}

func TestReadTreeReturnsWhatWriteFilesWrote(t *testing.T) {
	tests := []struct {
		name  string
		files map[string][]byte
		extra func(t *testing.T, dir string) // entries ReadTree must pass over
	}{
		{"empty", map[string][]byte{}, nil},
		{"nested", map[string][]byte{
			"top.txt":        []byte("top"),
			"a/b/c/deep.bin": RandomBytes(1, 5000),
			"a/empty":        {},
			"with space/x":   []byte("x"),
		}, nil},
		{"only regular files", map[string][]byte{"data/f": []byte("f")}, func(t *testing.T, dir string) {
			if err := os.Symlink("data/f", filepath.Join(dir, "link")); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(filepath.Join(dir, "empty-dir"), 0o755); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			WriteFiles(t, dir, tt.files)
			if tt.extra != nil {
				tt.extra(t, dir)
			}
			got := ReadTree(t, dir)
			if names, want := slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(tt.files)); !slices.Equal(names, want) {
				t.Fatalf("ReadTree read %q, want %q", names, want)
			}
			for name, want := range tt.files {
				if !bytes.Equal(got[name], want) {
					t.Errorf("%s: read %d bytes that differ from the %d written", name, len(got[name]), len(want))
				}
			}
		})
	}
}
