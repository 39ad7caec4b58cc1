package vault

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/custodyhq/custody/internal/backend"
)

// ErrBlobNotFound: the index knows no such blob.
var ErrBlobNotFound = errors.New("blob not in the vault's index")

// Blob plaintext framing inside the seal: one byte saying how the rest is encoded.
const (
	frameRaw  = 0
	frameZstd = 1
)

// scratch is a free list of buffers for sealed and framed blobs. Not a
// sync.Pool: every GC empties a Pool, and then each chunk would allocate
// megabytes again; a bounded list keeps a handful alive for good.
var scratch = freeList{ch: make(chan *[]byte, 16)}

type freeList struct{ ch chan *[]byte }

func (f freeList) Get() *[]byte {
	select {
	case b := <-f.ch:
		return b
	default:
		b := make([]byte, 0, 1<<20)
		return &b
	}
}

func (f freeList) Put(b *[]byte) {
	select {
	case f.ch <- b:
	default:
	}
}

// HasBlob reports whether id is stored (or being stored by this process).
func (v *Vault) HasBlob(id ID) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.knownLocked(id)
}

func (v *Vault) knownLocked(id ID) bool {
	if _, ok := v.inflight[id]; ok {
		return true
	}
	if loc, ok := v.written[id]; ok && !v.excluded[loc.Pack] {
		return true
	}
	_, ok := v.idx.lookup(id, v.excluded)
	return ok
}

// SaveBlob compresses (where it pays), seals and packs plaintext under id,
// unless the vault has it. The CPU work runs in the caller's goroutine, so
// callers parallelise by calling from several. It returns the sealed bytes
// added, 0 for a duplicate.
func (v *Vault) SaveBlob(ctx context.Context, t BlobType, id ID, plaintext []byte) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if len(plaintext) > v.maxRawLen(t) {
		return 0, fmt.Errorf("save blob %s: %d bytes is more than a %s blob may hold (%d)", id.Short(), len(plaintext), t, v.maxRawLen(t))
	}
	v.mu.Lock()
	if v.knownLocked(id) {
		v.mu.Unlock()
		return 0, nil
	}
	v.inflight[id] = struct{}{}
	v.mu.Unlock()

	bp := scratch.Get()
	defer scratch.Put(bp)
	framed := v.frame((*bp)[:0], t, plaintext)
	sp := scratch.Get()
	defer scratch.Put(sp)
	sealed := v.seal.seal((*sp)[:0], framed, blobAAD(id))
	*bp, *sp = framed[:0], sealed[:0]

	v.mu.Lock()
	p := v.packers[t]
	if p == nil {
		var err error
		if p, err = newPacker(v.be); err != nil {
			delete(v.inflight, id)
			v.mu.Unlock()
			return 0, err
		}
		v.packers[t] = p
	}
	if err := p.add(t, id, sealed, len(plaintext)); err != nil {
		// The pack is unusable now: drop it and everything in it.
		v.packers[t] = nil
		for _, e := range p.entries {
			delete(v.inflight, e.ID)
		}
		delete(v.inflight, id)
		v.mu.Unlock()
		p.discard(v.be)
		return 0, err
	}
	var full *packer
	if p.size >= int64(v.cfg.PackSize) {
		full, v.packers[t] = p, nil
	}
	v.mu.Unlock()
	if full != nil {
		if err := v.uploadPack(ctx, full); err != nil {
			return 0, err
		}
	}
	return len(sealed), nil
}

func blobAAD(id ID) []byte { return append([]byte("blob "), id[:]...) }

// frame prefixes plaintext with its encoding, compressing when it pays:
// a quick probe skips data that will not compress (media, weights, ciphertext).
func (v *Vault) frame(dst []byte, t BlobType, plaintext []byte) []byte {
	const probe = 16 << 10
	if t == DataBlob && len(plaintext) > 2*probe {
		mid := len(plaintext)/2 - probe/2
		sample := plaintext[mid : mid+probe]
		out := v.zfast.EncodeAll(sample, make([]byte, 0, probe))
		if len(out) > probe*9/10 {
			return append(append(dst, frameRaw), plaintext...)
		}
	}
	// Data uses zstd's fastest level: on mixed datasets it stores about 1%
	// more than the default level at a third of the CPU. Trees are small
	// and repetitive and get the default level.
	enc := v.zfast
	if t == TreeBlob {
		enc = v.zenc
	}
	dst = append(dst, frameZstd)
	out := enc.EncodeAll(plaintext, dst)
	if len(out)-1 >= len(plaintext)*97/100 {
		return append(append(dst[:0], frameRaw), plaintext...)
	}
	return out
}

// uploadPack finishes a pack, stores it and records its blobs.
func (v *Vault) uploadPack(ctx context.Context, p *packer) error {
	name, err := p.finish(v.seal)
	if err == nil {
		h := backend.Handle{Kind: backend.Packs, Name: name.String()}
		if p.file != nil {
			f := p.file
			p.file = nil
			err = v.be.(backend.FilePutter).PutFile(ctx, h, f)
		} else {
			err = v.be.Put(ctx, h, p.buf)
			p.buf = nil
		}
		if errors.Is(err, backend.ErrExists) {
			err = nil // the same bytes are already there
		}
	}
	if err != nil {
		p.discard(v.be)
		v.mu.Lock()
		for _, e := range p.entries {
			delete(v.inflight, e.ID)
		}
		v.mu.Unlock()
		return fmt.Errorf("store pack: %w", err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, e := range p.entries {
		v.written[e.ID] = location{Pack: name, Type: e.Type, Offset: e.Offset, Length: e.Length, RawLen: e.RawLen}
		delete(v.inflight, e.ID)
	}
	v.unindexed = append(v.unindexed, packIndex{Pack: name, Blobs: p.entries})
	if len(v.unindexed) >= indexEvery {
		batch := v.unindexed
		v.unindexed = nil
		v.mu.Unlock()
		err := v.writeIndex(ctx, batch)
		v.mu.Lock()
		return err
	}
	return nil
}

func (v *Vault) writeIndex(ctx context.Context, packs []packIndex) error {
	if len(packs) == 0 {
		return nil
	}
	_, err := v.putSealedObject(ctx, backend.Index, encodeIndex(packs))
	return err
}

// Flush stores partly filled packs and indexes everything stored so far.
// Nothing written before Flush returns is referenced until it has been indexed.
func (v *Vault) Flush(ctx context.Context) error {
	v.mu.Lock()
	ps := v.packers
	v.packers = [2]*packer{}
	v.mu.Unlock()
	for _, p := range ps {
		if p != nil && len(p.entries) > 0 {
			if err := v.uploadPack(ctx, p); err != nil {
				return err
			}
		}
	}
	v.mu.Lock()
	batch := v.unindexed
	v.unindexed = nil
	v.mu.Unlock()
	return v.writeIndex(ctx, batch)
}

// LoadBlob reads, authenticates, decompresses and verifies blob id.
func (v *Vault) LoadBlob(ctx context.Context, id ID) ([]byte, error) {
	return v.LoadBlobInto(ctx, id, nil)
}

// LoadBlobInto is LoadBlob appending the plaintext to buf[:0], so that a
// caller reusing buffers makes the read path allocation-free.
func (v *Vault) LoadBlobInto(ctx context.Context, id ID, buf []byte) ([]byte, error) {
	loc, err := v.locate(id)
	if err != nil {
		return nil, err
	}
	h := backend.Handle{Kind: backend.Packs, Name: loc.Pack.String()}
	var sealed []byte
	if rr, ok := v.be.(backend.RangeReader); ok {
		sp := scratch.Get()
		defer scratch.Put(sp)
		sealed = slices.Grow((*sp)[:0], int(loc.Length))[:loc.Length]
		*sp = sealed[:0]
		err = rr.ReadRange(ctx, h, int64(loc.Offset), sealed)
	} else {
		sealed, err = v.be.GetRange(ctx, h, int64(loc.Offset), int64(loc.Length))
	}
	if err != nil {
		return nil, fmt.Errorf("load blob %s from pack %s: %w", id.Short(), loc.Pack.Short(), err)
	}
	plain, err := v.openBlob(id, loc.Type, sealed, int(loc.RawLen), buf[:0])
	if err != nil {
		return nil, fmt.Errorf("load blob %s from pack %s: %w", id.Short(), loc.Pack.Short(), err)
	}
	return plain, nil
}

func (v *Vault) locate(id ID) (location, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	loc, ok := v.written[id]
	if !ok {
		// Marked packs still serve reads until prune deletes them.
		if loc, ok = v.idx.lookup(id, v.excluded); !ok {
			loc, ok = v.idx.lookup(id, nil)
		}
	}
	if !ok {
		return loc, fmt.Errorf("load blob %s: %w", id.Short(), ErrBlobNotFound)
	}
	return loc, nil
}

// openBlob authenticates a sealed blob, decrypting it in place (sealed is
// overwritten), decodes it into dst and checks that it hashes to id.
func (v *Vault) openBlob(id ID, t BlobType, sealed []byte, rawLen int, dst []byte) ([]byte, error) {
	framed, err := v.seal.openInPlace(sealed, blobAAD(id))
	if err != nil {
		return nil, err
	}
	if len(framed) == 0 {
		return nil, fmt.Errorf("%w: empty blob frame", ErrAuth)
	}
	var plain []byte
	switch framed[0] {
	case frameRaw:
		plain = append(dst, framed[1:]...)
	case frameZstd:
		if rawLen > v.maxRawLen(t) {
			return nil, fmt.Errorf("%s blob claims %d bytes, more than one may hold (%d)", t, rawLen, v.maxRawLen(t))
		}
		dec := v.zdec
		if t == TreeBlob {
			dec = v.zdecTree
		}
		plain, err = dec.DecodeAll(framed[1:], slices.Grow(dst, rawLen))
		if err != nil {
			return nil, fmt.Errorf("decompress: %w", err)
		}
	default:
		return nil, fmt.Errorf("unknown blob encoding %d", framed[0])
	}
	if v.BlobID(plain) != id {
		return nil, fmt.Errorf("%w: content does not hash to its id", ErrAuth)
	}
	return plain, nil
}

// MaxTreeBlob is the largest tree blob: one directory's entries, about
// seven million of them. Data blobs are chunks, at most twice the
// chunker's maximum.
const MaxTreeBlob = 1 << 30

// maxRawLen is the most plaintext a blob of type t may hold: what
// decompression is allowed to produce.
func (v *Vault) maxRawLen(t BlobType) int {
	if t == TreeBlob {
		return MaxTreeBlob
	}
	return 2 * v.cfg.Chunker.Max
}

// PackOf names the pack holding blob id (offsite locks protect a version's
// packs).
func (v *Vault) PackOf(id ID) (ID, error) {
	loc, err := v.locate(id)
	if err != nil {
		return ID{}, err
	}
	return loc.Pack, nil
}
