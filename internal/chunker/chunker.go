// Package chunker splits a byte stream into content-defined chunks whose cut points depend on a secret key.
//
// The algorithm is FastCDC (Xia et al., "FastCDC: a Fast and Efficient
// Content-Defined Chunking Approach for Data Deduplication", USENIX ATC 2016)
// with normalized chunking level 2: a gear rolling hash is tested against a
// stricter mask before the average size and a looser one after it, which
// narrows the chunk size distribution around Params.Avg. The 256-entry gear
// table is derived from a 32-byte key, so without the key the cut points (and
// therefore the chunk sizes) reveal nothing about the content.
//
// The cut points are part of the vault format: changing the table derivation,
// the masks or the cut rule changes every chunk id and must be a format
// version bump. testdata/golden_cuts.txt pins them.
package chunker

import (
	"errors"
	"fmt"
	"io"
	"math/bits"
)

// Params bound the chunk sizes, in bytes. Avg must be a power of two and
// Min < Avg < Max. Every chunk except the last of a stream is in [Min, Max].
type Params struct{ Min, Avg, Max int }

// DefaultParams are the vault's chunk sizes: 256 KiB, 1 MiB, 4 MiB.
var DefaultParams = Params{Min: 256 << 10, Avg: 1 << 20, Max: 4 << 20}

// Limits on Params. MinChunkSize is the gear hash window: a smaller Min would
// allow cuts that depend on fewer bytes than the hash can see. MaxChunkSize
// keeps the internal buffer to a sane allocation.
const (
	MinChunkSize = 64
	MaxChunkSize = 1 << 30
)

// ErrInvalidParams is returned (wrapped) by Params.Validate and New.
var ErrInvalidParams = errors.New("chunker: invalid params")

// Validate reports whether p can be used to chunk.
func (p Params) Validate() error {
	switch {
	case p.Min < MinChunkSize:
		return fmt.Errorf("%w: Min %d is below %d", ErrInvalidParams, p.Min, MinChunkSize)
	case p.Max > MaxChunkSize:
		return fmt.Errorf("%w: Max %d is above %d", ErrInvalidParams, p.Max, MaxChunkSize)
	case p.Avg <= 0 || p.Avg&(p.Avg-1) != 0:
		return fmt.Errorf("%w: Avg %d is not a power of two", ErrInvalidParams, p.Avg)
	case !(p.Min < p.Avg && p.Avg < p.Max):
		return fmt.Errorf("%w: need Min < Avg < Max, got %d, %d, %d", ErrInvalidParams, p.Min, p.Avg, p.Max)
	}
	return nil
}

// Chunker cuts the stream read from r into content-defined chunks.
// It is not safe for concurrent use.
type Chunker struct {
	gear         gearTable
	min, avg     int
	max          int
	maskS, maskL uint64

	r          io.Reader
	buf        []byte // buf[start:end] is read but not yet returned
	start, end int
	eof        bool  // r has returned io.EOF
	err        error // sticky read error, already wrapped
}

// readBlock is the least that the buffer holds beyond one maximal chunk, so
// that reads are large and compaction (one memmove of < Max bytes) is rare.
const readBlock = 64 << 10

// New returns a Chunker that reads from r and cuts with the gear table
// derived from key. It fails only if p is invalid.
func New(r io.Reader, key [32]byte, p Params) (*Chunker, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	// NC level 2: Avg = 2^b; before Avg a cut needs b+2 zero bits (rarer),
	// after it b-2 zero bits (likelier). The masks take the top bits of the
	// fingerprint: with fp = fp<<1 + gear[byte], bit k depends on the last
	// k+1 bytes, so the low bits would see only a few bytes of context.
	b := bits.TrailingZeros(uint(p.Avg))
	c := &Chunker{
		min:   p.Min,
		avg:   p.Avg,
		max:   p.Max,
		maskS: topBits(b + 2),
		maskL: topBits(b - 2),
		buf:   make([]byte, p.Max+max(p.Max, readBlock)),
	}
	deriveGear(&c.gear, key)
	c.Reset(r)
	return c, nil
}

// topBits returns a mask of the n most significant bits. Validate keeps n
// within [5, 31] (Avg is between 128 and 2^29).
func topBits(n int) uint64 {
	return ^uint64(0) << (64 - n)
}

// Reset makes c chunk r from its beginning, keeping the key, params and buffer.
func (c *Chunker) Reset(r io.Reader) {
	c.r = r
	c.start, c.end = 0, 0
	c.eof = false
	c.err = nil
}

// Next returns the next chunk's bytes, appended to buf[:0] (reallocating
// only if cap(buf) < chunk length), or (nil, io.EOF) after the last chunk.
//
// A read error from r is returned wrapped, and again on every later call.
// Bytes buffered when it occurs are not returned: the stream is incomplete,
// and its last chunk would end at the failure rather than at a real cut.
func (c *Chunker) Next(buf []byte) ([]byte, error) {
	if c.err != nil {
		return nil, c.err
	}
	if c.end-c.start < c.max && !c.eof {
		if err := c.fill(); err != nil {
			c.err = err
			return nil, err
		}
	}
	if c.start == c.end {
		return nil, io.EOF
	}
	n := c.cut(c.buf[c.start:c.end])
	chunk := append(buf[:0], c.buf[c.start:c.start+n]...)
	c.start += n
	return chunk, nil
}

// maxEmptyReads is how many (0, nil) reads in a row fill tolerates, as bufio does.
const maxEmptyReads = 100

// fill moves the unread bytes to the front of the buffer and reads until the
// buffer is full or r reports io.EOF. Data returned together with io.EOF is kept.
func (c *Chunker) fill() error {
	if c.start > 0 {
		c.end = copy(c.buf, c.buf[c.start:c.end])
		c.start = 0
	}
	empty := 0
	for c.end < len(c.buf) {
		n, err := c.r.Read(c.buf[c.end:])
		if n < 0 || n > len(c.buf)-c.end {
			return fmt.Errorf("chunker: read: reader returned invalid count %d", n)
		}
		c.end += n
		switch {
		case err == io.EOF:
			c.eof = true
			return nil
		case err != nil:
			return fmt.Errorf("chunker: read: %w", err)
		case n > 0:
			empty = 0
		default:
			if empty++; empty >= maxEmptyReads {
				return fmt.Errorf("chunker: read: %w", io.ErrNoProgress)
			}
		}
	}
	return nil
}
