package detect

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// maxSampleBlocks is how many blocks Sample reads at most: the first, the
// last and up to six between.
const maxSampleBlocks = 8

// Sample reads blocks of f, whose size is size: all of them when there
// are at most eight, or else the first, the last and up to six evenly
// spaced between (see sampleOffsets), each BlockSize bytes at a multiple
// of BlockSize (the last may be shorter), in at most eight reads. Reads are positioned (pread): f's offset does not move.
// A file that shrank since size was taken gives fewer or shorter blocks;
// one that grew is sampled as size long.
func Sample(f *os.File, size int64) (*Content, error) {
	if size < 0 {
		return nil, fmt.Errorf("sample %s: negative size %d", f.Name(), size)
	}
	c := &Content{Size: size}
	for _, off := range sampleOffsets(size) {
		n := int64(BlockSize)
		if size-off < n {
			n = size - off
		}
		b := make([]byte, n)
		got, err := f.ReadAt(b, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("sample %s at %d: %w", f.Name(), off, err)
		}
		if got == 0 {
			break // the file shrank: nothing from here on
		}
		c.Offsets = append(c.Offsets, off)
		c.Blocks = append(c.Blocks, b[:got])
		if got < len(b) {
			break
		}
	}
	return c, nil
}

// sampleOffsets are the offsets Sample reads for a file of size bytes,
// ascending: block i of n (n = ⌈size/BlockSize⌉) for i = 0, n−1, and
// i = ⌊j(n−1)/7⌋ for j = 1..6, moved to the next block when its parity is
// not j's, so that the middle blocks alternate between even and odd: a
// file with every other block encrypted then shows both kinds, whatever
// its length.
func sampleOffsets(size int64) []int64 {
	n := (size + BlockSize - 1) / BlockSize
	if n <= maxSampleBlocks {
		offs := make([]int64, n)
		for i := range offs {
			offs[i] = int64(i) * BlockSize
		}
		return offs
	}
	offs := make([]int64, 0, maxSampleBlocks)
	prev := int64(-1)
	for j := int64(0); j < maxSampleBlocks; j++ {
		i := j * (n - 1) / (maxSampleBlocks - 1)
		if j > 0 && j < maxSampleBlocks-1 && i%2 != j%2 && i+1 < n-1 {
			i++ // alternate parities: every-other-block encryption shows
		}
		if i > prev {
			offs = append(offs, i*BlockSize)
			prev = i
		}
	}
	return offs
}
