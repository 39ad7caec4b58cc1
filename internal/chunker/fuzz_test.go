package chunker

import (
	"bytes"
	"slices"
	"testing"

	"github.com/custodyhq/custody/internal/testkit"
)

// FuzzChunker checks, for small valid params and any read pattern, that the
// chunks reassemble to the input, respect [Min, Max], and do not depend on how
// the reader splits its reads.
func FuzzChunker(f *testing.F) {
	f.Add([]byte{}, uint8(0), uint8(0), uint8(0), uint16(1))
	f.Add([]byte("hello"), uint8(0), uint8(1), uint8(0), uint16(3))
	f.Add(testkit.RandomBytes(1, 2<<10), uint8(0), uint8(2), uint8(0), uint16(4096))
	f.Add(testkit.RandomBytes(2, 4<<10), uint8(17), uint8(1), uint8(99), uint16(333))
	f.Add(bytes.Repeat([]byte{0}, 3000), uint8(5), uint8(0), uint8(7), uint16(1))
	f.Fuzz(func(t *testing.T, data []byte, minSel, avgSel, maxSel uint8, readSize uint16) {
		avg := 128 << (avgSel % 4) // 128 .. 1024
		p := Params{
			Min: 64 + int(minSel)%(avg-64),
			Avg: avg,
			Max: avg + 1 + int(maxSel)*8,
		}
		c, err := New(bytes.NewReader(data), testKey(minSel), p)
		if err != nil {
			t.Fatalf("New(%+v): %v", p, err)
		}
		want, err := drain(c)
		if err != nil {
			t.Fatal(err)
		}
		checkChunks(t, data, want, p)

		r := &patternReader{data: data, sizes: []int{int(readSize%4096) + 1, 1, 0}, eofWithData: readSize%2 == 0}
		c.Reset(r)
		got, err := drain(c)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(cutOffsets(got), cutOffsets(want)) {
			t.Fatalf("cuts depend on read sizes: %v vs %v", cutOffsets(got), cutOffsets(want))
		}
	})
}
