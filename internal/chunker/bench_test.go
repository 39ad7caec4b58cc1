package chunker

import (
	"bytes"
	"io"
	"testing"

	"github.com/custodyhq/custody/internal/testkit"
)

// BenchmarkChunker measures end-to-end throughput on random data, including
// the copy of each chunk into the caller's buffer.
func BenchmarkChunker(b *testing.B) {
	data := testkit.RandomBytes(1, 64<<20)
	for _, tc := range []struct {
		name string
		p    Params
	}{
		{"default", DefaultParams},
		{"small", Params{Min: 16 << 10, Avg: 64 << 10, Max: 256 << 10}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r := bytes.NewReader(data)
			c, err := New(r, testKey(1), tc.p)
			if err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 0, tc.p.Max)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				r.Reset(data)
				c.Reset(r)
				for {
					chunk, err := c.Next(buf)
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
					buf = chunk
				}
			}
		})
	}
}
