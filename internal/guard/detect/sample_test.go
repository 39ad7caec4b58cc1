package detect

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/custodyhq/custody/internal/testkit"
)

func TestSampleOffsetsCoverFirstLastAndBetween(t *testing.T) {
	const B = BlockSize
	tests := []struct {
		name string
		size int64
		want []int64
	}{
		{"an empty file has no blocks", 0, nil},
		{"a one-byte file is one block", 1, []int64{0}},
		{"exactly one block", B, []int64{0}},
		{"one byte more is two blocks", B + 1, []int64{0, B}},
		{"eight blocks are all read", 8 * B, []int64{0, B, 2 * B, 3 * B, 4 * B, 5 * B, 6 * B, 7 * B}},
		{"nine blocks: first, last and six between", 9 * B, []int64{0, B, 2 * B, 3 * B, 4 * B, 5 * B, 6 * B, 8 * B}},
		{"thirty blocks: the middle alternates parity", 30 * B, []int64{0, 5 * B, 8 * B, 13 * B, 16 * B, 21 * B, 24 * B, 29 * B}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := sampleOffsets(tc.size); !slices.Equal(got, tc.want) {
				t.Errorf("sampleOffsets(%d) = %v, want %v", tc.size, got, tc.want)
			}
		})
	}
}

func TestSampleOffsetsAreAlignedAscendingAndAtMostEight(t *testing.T) {
	for size := int64(0); size < 2000*BlockSize; size = size*3/2 + 777 {
		offs := sampleOffsets(size)
		if len(offs) > maxSampleBlocks {
			t.Fatalf("size %d: %d blocks", size, len(offs))
		}
		for i, o := range offs {
			if o%BlockSize != 0 || o >= max(size, 1) || (i > 0 && o <= offs[i-1]) {
				t.Fatalf("size %d: offsets %v", size, offs)
			}
		}
		if size > 0 && (offs[0] != 0 || offs[len(offs)-1] != (size-1)/BlockSize*BlockSize) {
			t.Fatalf("size %d: offsets %v miss the first or last block", size, offs)
		}
	}
}

func TestSampleReadsTheBlocksAtTheirOffsets(t *testing.T) {
	data := testkit.RandomBytes(1, 100*BlockSize+123)
	c := contentOf(t, "f.bin", data)
	if c.Size != int64(len(data)) || len(c.Blocks) != 8 || len(c.Offsets) != 8 {
		t.Fatalf("size %d, %d blocks, %d offsets", c.Size, len(c.Blocks), len(c.Offsets))
	}
	for i, b := range c.Blocks {
		off := c.Offsets[i]
		if !bytes.Equal(b, data[off:min(off+BlockSize, int64(len(data)))]) {
			t.Errorf("block %d at %d differs", i, off)
		}
	}
	if n := len(c.Blocks[7]); n != 123 {
		t.Errorf("last block %d bytes, want 123", n)
	}
}

func TestSampleOfAFileThatShrankKeepsWhatWasThere(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, testkit.RandomBytes(2, 5*BlockSize+10), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := Sample(f, 50*BlockSize) // the size it had when stat'ed
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Blocks) == 0 || len(c.Blocks[len(c.Blocks)-1]) == 0 {
		t.Fatalf("blocks %d", len(c.Blocks))
	}
	for i, o := range c.Offsets {
		if o > 5*BlockSize {
			t.Errorf("block %d at %d is past the end", i, o)
		}
	}
}

func TestSampleRefusesANegativeSize(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := Sample(f, -1); err == nil {
		t.Error("no error")
	}
}

func TestSampleDoesNotMoveTheFileOffset(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	os.WriteFile(p, testkit.RandomBytes(3, 20*BlockSize), 0o644)
	f, _ := os.Open(p)
	defer f.Close()
	if _, err := Sample(f, 20*BlockSize); err != nil {
		t.Fatal(err)
	}
	if off, _ := f.Seek(0, 1); off != 0 {
		t.Errorf("offset %d", off)
	}
}
