package chunker

import (
	"encoding/binary"

	"github.com/zeebo/blake3"
)

// gearContext is the BLAKE3 key-derivation context for the gear table.
// Changing it changes every cut point: it is part of the vault format.
const gearContext = "custody chunker gear v1"

// gearTable maps a byte to the 64-bit value the rolling hash adds for it.
type gearTable [256]uint64

// deriveGear fills t with the first 2048 bytes of BLAKE3's derive-key mode
// (an extendable output) for gearContext and key, read as little-endian
// uint64s. The entries are then indistinguishable from random to anyone
// without the key, which is what keeps cut points from leaking content.
func deriveGear(t *gearTable, key [32]byte) {
	var raw [len(t) * 8]byte
	blake3.DeriveKey(gearContext, key[:], raw[:])
	for i := range t {
		t[i] = binary.LittleEndian.Uint64(raw[i*8:])
	}
}

// cut returns the length of the chunk at the start of data, which holds at
// least Max bytes unless it is the end of the stream.
//
// FastCDC: no cut is considered before Min; the gear fingerprint
// fp = fp<<1 + gear[b] starts from zero at Min, and the chunk ends after the
// first byte where fp&maskS == 0 before Avg, or fp&maskL == 0 from Avg on,
// or at Max. Only the last 64 bytes influence fp, so a cut point depends on
// its neighbourhood alone (and not on where the previous chunk started, once
// Min+64 bytes have passed): that is what keeps boundaries stable under
// insertions.
func (c *Chunker) cut(data []byte) int {
	n := len(data)
	if n <= c.min {
		return n
	}
	n = min(n, c.max)
	normal := min(c.avg, n)
	g := &c.gear
	var fp uint64

	if i, ok := scan(g, &fp, data[c.min:normal], c.maskS); ok {
		return c.min + i
	}
	if i, ok := scan(g, &fp, data[normal:n], c.maskL); ok {
		return normal + i
	}
	return n
}

// scan rolls *fp over p and returns the length of the shortest prefix of p
// after which fp&mask == 0, and true; or 0 and false if there is none.
//
// The loop takes four bytes a step. Sequentially, each byte costs a shift and
// an add on the dependency chain through fp. Instead, since
// fp<<4 + g0<<3 + g1<<2 + g2<<1 + g3 is exactly four sequential steps
// (mod 2^64), the chain advances four bytes with one shift and one add, and
// the intermediate fingerprints, needed only for the mask tests, are computed
// off the chain.
func scan(g *gearTable, fp *uint64, p []byte, mask uint64) (int, bool) {
	h := *fp
	i := 0
	for ; i+4 <= len(p); i += 4 {
		q := p[i : i+4 : i+4]
		g0, g1, g2, g3 := g[q[0]], g[q[1]], g[q[2]], g[q[3]]
		t01 := g0<<1 + g1
		h1 := h<<1 + g0
		h2 := h<<2 + t01
		h3 := h2<<1 + g2
		h4 := h<<4 + (t01<<2 + g2<<1 + g3)
		if h1&mask == 0 || h2&mask == 0 || h3&mask == 0 || h4&mask == 0 {
			break // the byte-wise loop below finds which one
		}
		h = h4
	}
	for ; i < len(p); i++ {
		h = h<<1 + g[p[i]]
		if h&mask == 0 {
			*fp = h
			return i + 1, true
		}
	}
	*fp = h
	return 0, false
}
