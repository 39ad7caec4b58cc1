package vault

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"os"
	"syscall"

	"github.com/custodyhq/custody/internal/backend"
)

// A pack is a write-once object holding sealed blobs followed by a sealed
// header that lists them, then the header's length:
//
//	blob_0 | blob_1 | ... | blob_n-1 | sealed header | uint32 LE len(sealed header)
//
// The header plaintext is "CPK1", a uint32 count, then per blob:
// type (1 byte), id (32), sealed length (uint32), plaintext length (uint32);
// offsets follow from the lengths. A pack is named by the SHA-256 of its bytes.

const (
	packMagic         = "CPK1"
	packEntrySize     = 1 + 32 + 4 + 4
	maxPackHeaderSize = 16 << 20
)

// ErrBadPack wraps every pack parsing failure.
var ErrBadPack = errors.New("malformed pack")

// blobEntry is one blob in a pack.
type blobEntry struct {
	Type   BlobType
	ID     ID
	Offset uint32
	Length uint32 // sealed length
	RawLen uint32 // plaintext length, after decompression
}

// packer accumulates sealed blobs of one type until the pack is full. The
// bytes go to a temporary file of the backend when it offers one, so a
// pack costs page cache rather than heap; otherwise to memory.
type packer struct {
	file    *os.File // nil: buf holds the pack
	buf     []byte
	size    int64
	hash    hash.Hash
	entries []blobEntry
}

func newPacker(be backend.Backend) (*packer, error) {
	p := &packer{hash: sha256.New()}
	if fp, ok := be.(backend.FilePutter); ok {
		f, err := fp.CreateTemp()
		if err != nil {
			return nil, fmt.Errorf("new pack: %w", err)
		}
		p.file = f
	}
	return p, nil
}

func (p *packer) write(b []byte) error {
	if p.file != nil {
		if _, err := p.file.Write(b); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return fmt.Errorf("write pack: the disk is full; free some space and retry: %w", err)
			}
			return fmt.Errorf("write pack: %w", err)
		}
	} else {
		p.buf = append(p.buf, b...)
	}
	p.hash.Write(b)
	p.size += int64(len(b))
	return nil
}

func (p *packer) add(t BlobType, id ID, sealed []byte, rawLen int) error {
	off := p.size
	if err := p.write(sealed); err != nil {
		return err
	}
	p.entries = append(p.entries, blobEntry{Type: t, ID: id, Offset: uint32(off), Length: uint32(len(sealed)), RawLen: uint32(rawLen)})
	return nil
}

// finish appends the sealed header and its length and returns the pack's name.
func (p *packer) finish(s *sealer) (ID, error) {
	hdr := make([]byte, 0, 8+len(p.entries)*packEntrySize)
	hdr = append(hdr, packMagic...)
	hdr = binary.LittleEndian.AppendUint32(hdr, uint32(len(p.entries)))
	for _, e := range p.entries {
		hdr = append(hdr, byte(e.Type))
		hdr = append(hdr, e.ID[:]...)
		hdr = binary.LittleEndian.AppendUint32(hdr, e.Length)
		hdr = binary.LittleEndian.AppendUint32(hdr, e.RawLen)
	}
	sealed := s.seal(nil, hdr, []byte("pack header"))
	sealed = binary.LittleEndian.AppendUint32(sealed, uint32(len(sealed)))
	if err := p.write(sealed); err != nil {
		return ID{}, err
	}
	var id ID
	p.hash.Sum(id[:0])
	return id, nil
}

// discard drops an unfinished pack.
func (p *packer) discard(be backend.Backend) {
	if p.file != nil {
		be.(backend.FilePutter).DiscardTemp(p.file)
		p.file = nil
	}
}

// packHeaderLen reads the trailing length of a pack's sealed header.
func packHeaderLen(tail []byte, packSize int64) (int64, error) {
	if len(tail) != 4 {
		return 0, fmt.Errorf("%w: trailer of %d bytes", ErrBadPack, len(tail))
	}
	n := int64(binary.LittleEndian.Uint32(tail))
	if n < sealOverhead+8 || n > maxPackHeaderSize || n+4 > packSize {
		return 0, fmt.Errorf("%w: header length %d in a pack of %d bytes", ErrBadPack, n, packSize)
	}
	return n, nil
}

// decodePackHeader parses a header plaintext; headerOffset is where the
// sealed header starts, which is where the last blob must end.
func decodePackHeader(b []byte, headerOffset int64) ([]blobEntry, error) {
	if len(b) < 8 || string(b[:4]) != packMagic {
		return nil, fmt.Errorf("%w: bad header magic", ErrBadPack)
	}
	count := binary.LittleEndian.Uint32(b[4:8])
	b = b[8:]
	if uint64(len(b)) != uint64(count)*packEntrySize {
		return nil, fmt.Errorf("%w: header says %d blobs in %d bytes", ErrBadPack, count, len(b))
	}
	entries := make([]blobEntry, count)
	var off int64
	for i := range entries {
		e := &entries[i]
		e.Type = BlobType(b[0])
		if e.Type != DataBlob && e.Type != TreeBlob {
			return nil, fmt.Errorf("%w: blob %d has type %d", ErrBadPack, i, b[0])
		}
		copy(e.ID[:], b[1:33])
		e.Length = binary.LittleEndian.Uint32(b[33:37])
		e.RawLen = binary.LittleEndian.Uint32(b[37:41])
		if e.Length < sealOverhead+1 {
			return nil, fmt.Errorf("%w: blob %d of %d bytes", ErrBadPack, i, e.Length)
		}
		e.Offset = uint32(off)
		off += int64(e.Length)
		b = b[packEntrySize:]
	}
	if off != headerOffset {
		return nil, fmt.Errorf("%w: blobs end at %d, header starts at %d", ErrBadPack, off, headerOffset)
	}
	return entries, nil
}
