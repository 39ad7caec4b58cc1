package chunker

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"testing"

	"github.com/custodyhq/custody/internal/testkit"
)

// random32MiB is shared by the tests that need a large input; do not modify it.
var random32MiB = sync.OnceValue(func() []byte { return testkit.RandomBytes(1, 32<<20) })

// testKey returns a fixed chunker key distinguished by seed.
func testKey(seed byte) [32]byte {
	var k [32]byte
	for i := range k {
		k[i] = seed + byte(i)
	}
	return k
}

// smallParams keep chunks small so that short inputs still have many cuts.
var smallParams = Params{Min: 64, Avg: 256, Max: 1024}

// midParams give hundreds of chunks in 32 MiB, enough for statistics.
var midParams = Params{Min: 16 << 10, Avg: 64 << 10, Max: 256 << 10}

// chunkAll returns every chunk of r, or the first error other than io.EOF
// together with the chunks before it.
func chunkAll(tb testing.TB, r io.Reader, key [32]byte, p Params) ([][]byte, error) {
	tb.Helper()
	c, err := New(r, key, p)
	if err != nil {
		tb.Fatalf("New(%+v): %v", p, err)
	}
	return drain(c)
}

func drain(c *Chunker) ([][]byte, error) {
	var chunks [][]byte
	for {
		chunk, err := c.Next(nil)
		if errors.Is(err, io.EOF) {
			return chunks, nil
		}
		if err != nil {
			return chunks, err
		}
		chunks = append(chunks, chunk)
	}
}

// mustChunk chunks data read through a bytes.Reader.
func mustChunk(tb testing.TB, data []byte, key [32]byte, p Params) [][]byte {
	tb.Helper()
	chunks, err := chunkAll(tb, bytes.NewReader(data), key, p)
	if err != nil {
		tb.Fatalf("chunk: %v", err)
	}
	return chunks
}

// cutOffsets returns the end offset of every chunk.
func cutOffsets(chunks [][]byte) []int {
	offs := make([]int, len(chunks))
	end := 0
	for i, c := range chunks {
		end += len(c)
		offs[i] = end
	}
	return offs
}

// checkChunks fails tb unless chunks reassemble to data and every chunk but
// the last is within [p.Min, p.Max] (the last within [1, p.Max]).
func checkChunks(tb testing.TB, data []byte, chunks [][]byte, p Params) {
	tb.Helper()
	if got := bytes.Join(chunks, nil); !bytes.Equal(got, data) {
		tb.Fatalf("chunks reassemble to %d bytes that differ from the %d-byte input", len(got), len(data))
	}
	for i, c := range chunks {
		last := i == len(chunks)-1
		if len(c) > p.Max || len(c) == 0 || (!last && len(c) < p.Min) {
			tb.Fatalf("chunk %d of %d has %d bytes, want within [%d, %d]", i, len(chunks), len(c), p.Min, p.Max)
		}
	}
}

// patternReader returns at most sizes[i%len(sizes)] bytes from its i-th Read,
// and with eofWithData reports io.EOF together with the last bytes.
type patternReader struct {
	data        []byte
	sizes       []int
	calls       int
	eofWithData bool
}

func (r *patternReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(r.data), r.sizes[r.calls%len(r.sizes)])
	r.calls++
	copy(p, r.data[:n])
	r.data = r.data[n:]
	if r.eofWithData && len(r.data) == 0 {
		return n, io.EOF
	}
	return n, nil
}
