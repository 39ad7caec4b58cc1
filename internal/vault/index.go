package vault

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// An index object tells where blobs are, so that a vault can be used without
// reading every pack's header. Its plaintext is
//
//	"CIX1" | uint32 LE pack count | per pack: pack id (32) | uint32 LE blob count |
//	  per blob: type (1) | id (32) | offset, sealed length, plaintext length (uint32 LE each)
//
// sealed with associated data "index" and named by the SHA-256 of the sealed bytes.
// Index objects are write-once; prune writes a consolidated one and then
// deletes those it replaces. A blob listed twice is found at either place.

const (
	indexMagic      = "CIX1"
	indexEntrySize  = 1 + 32 + 12
	maxIndexObjSize = 1 << 30
)

// ErrBadIndex wraps every index object parsing failure.
var ErrBadIndex = errors.New("malformed index object")

// packIndex lists one pack's blobs.
type packIndex struct {
	Pack  ID
	Blobs []blobEntry
}

func encodeIndex(packs []packIndex) []byte {
	n := 8
	for _, p := range packs {
		n += 36 + len(p.Blobs)*indexEntrySize
	}
	b := make([]byte, 0, n)
	b = append(b, indexMagic...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(packs)))
	for _, p := range packs {
		b = append(b, p.Pack[:]...)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(p.Blobs)))
		for _, e := range p.Blobs {
			b = append(b, byte(e.Type))
			b = append(b, e.ID[:]...)
			b = binary.LittleEndian.AppendUint32(b, e.Offset)
			b = binary.LittleEndian.AppendUint32(b, e.Length)
			b = binary.LittleEndian.AppendUint32(b, e.RawLen)
		}
	}
	return b
}

// decodeIndex parses an index plaintext; it never trusts its input.
func decodeIndex(b []byte) ([]packIndex, error) {
	if len(b) < 8 || string(b[:4]) != indexMagic {
		return nil, fmt.Errorf("%w: bad magic", ErrBadIndex)
	}
	npacks := binary.LittleEndian.Uint32(b[4:8])
	b = b[8:]
	if uint64(npacks)*36 > uint64(len(b)) {
		return nil, fmt.Errorf("%w: %d packs in %d bytes", ErrBadIndex, npacks, len(b))
	}
	packs := make([]packIndex, npacks)
	for i := range packs {
		if len(b) < 36 {
			return nil, fmt.Errorf("%w: truncated at pack %d", ErrBadIndex, i)
		}
		p := &packs[i]
		copy(p.Pack[:], b[:32])
		nblobs := binary.LittleEndian.Uint32(b[32:36])
		b = b[36:]
		if uint64(nblobs)*indexEntrySize > uint64(len(b)) {
			return nil, fmt.Errorf("%w: pack %d says %d blobs in %d bytes", ErrBadIndex, i, nblobs, len(b))
		}
		p.Blobs = make([]blobEntry, nblobs)
		for j := range p.Blobs {
			e := &p.Blobs[j]
			e.Type = BlobType(b[0])
			if e.Type != DataBlob && e.Type != TreeBlob {
				return nil, fmt.Errorf("%w: blob type %d", ErrBadIndex, b[0])
			}
			copy(e.ID[:], b[1:33])
			e.Offset = binary.LittleEndian.Uint32(b[33:37])
			e.Length = binary.LittleEndian.Uint32(b[37:41])
			e.RawLen = binary.LittleEndian.Uint32(b[41:45])
			if e.Length < sealOverhead+1 || uint64(e.Offset)+uint64(e.Length) > 1<<32 {
				return nil, fmt.Errorf("%w: blob %s at %d+%d", ErrBadIndex, e.ID.Short(), e.Offset, e.Length)
			}
			b = b[indexEntrySize:]
		}
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrBadIndex, len(b))
	}
	return packs, nil
}
