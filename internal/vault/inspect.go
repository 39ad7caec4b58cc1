package vault

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/custodyhq/custody/internal/backend"
)

// This file gives check and prune a view of the vault's objects as stored,
// independent of the local index cache.

// BlobInfo describes one stored blob.
type BlobInfo struct {
	Type   BlobType
	ID     ID
	Offset uint32
	Length uint32 // sealed length
	RawLen uint32 // plaintext length
}

// PackBlobs lists one pack's blobs.
type PackBlobs struct {
	Pack  ID
	Blobs []BlobInfo
}

func toBlobInfos(es []blobEntry) []BlobInfo {
	out := make([]BlobInfo, len(es))
	for i, e := range es {
		out[i] = BlobInfo(e)
	}
	return out
}

// IndexObjects lists the ids of all index objects.
func (v *Vault) IndexObjects(ctx context.Context) ([]ID, error) {
	return v.listIDs(ctx, backend.Index)
}

// ReadIndexObject reads, authenticates and parses one index object.
func (v *Vault) ReadIndexObject(ctx context.Context, id ID) ([]PackBlobs, error) {
	packs, err := v.loadIndexObject(ctx, id)
	if err != nil {
		return nil, err
	}
	out := make([]PackBlobs, len(packs))
	for i, p := range packs {
		out[i] = PackBlobs{Pack: p.Pack, Blobs: toBlobInfos(p.Blobs)}
	}
	return out, nil
}

// PackIDs lists every pack with its stored size and time.
func (v *Vault) PackIDs(ctx context.Context) (map[ID]backend.Info, error) {
	return v.listInfos(ctx, backend.Packs)
}

// listInfos lists the hash-named objects of kind with their stored info.
func (v *Vault) listInfos(ctx context.Context, kind backend.Kind) (map[ID]backend.Info, error) {
	out := map[ID]backend.Info{}
	err := v.be.List(ctx, kind, func(i backend.Info) error {
		if id, err := ParseID(i.Handle.Name); err == nil {
			out[id] = i
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", kind, err)
	}
	return out, nil
}

// ReadPackHeader reads and authenticates a pack's header.
func (v *Vault) ReadPackHeader(ctx context.Context, id ID, size int64) ([]BlobInfo, error) {
	h := backend.Handle{Kind: backend.Packs, Name: id.String()}
	if size < 4 {
		return nil, fmt.Errorf("pack %s: %w: %d bytes", id.Short(), ErrBadPack, size)
	}
	tail, err := v.be.GetRange(ctx, h, size-4, 4)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", id.Short(), err)
	}
	n, err := packHeaderLen(tail, size)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", id.Short(), err)
	}
	sealed, err := v.be.GetRange(ctx, h, size-4-n, n)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", id.Short(), err)
	}
	return v.parsePackHeader(id, sealed, size-4-n)
}

func (v *Vault) parsePackHeader(id ID, sealed []byte, headerOffset int64) ([]BlobInfo, error) {
	plain, err := v.seal.open(nil, sealed, []byte("pack header"))
	if err != nil {
		return nil, fmt.Errorf("pack %s header: %w", id.Short(), err)
	}
	es, err := decodePackHeader(plain, headerOffset)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", id.Short(), err)
	}
	return toBlobInfos(es), nil
}

// BlobDamage names a blob that failed verification.
type BlobDamage struct {
	ID  ID
	Err error
}

// VerifyPack reads a whole pack, checks it hashes to its name, authenticates
// its header and every blob and checks each blob's plaintext against its id.
// Damaged blobs are returned; err is for a pack that cannot be read at all.
func (v *Vault) VerifyPack(ctx context.Context, id ID) ([]BlobInfo, []BlobDamage, error) {
	data, err := v.be.Get(ctx, backend.Handle{Kind: backend.Packs, Name: id.String()})
	if err != nil {
		return nil, nil, fmt.Errorf("pack %s: %w", id.Short(), err)
	}
	var damage []BlobDamage
	hashOK := ID(sha256.Sum256(data)) == id
	if len(data) < 4 {
		return nil, nil, fmt.Errorf("pack %s: %w: %d bytes", id.Short(), ErrBadPack, len(data))
	}
	n, err := packHeaderLen(data[len(data)-4:], int64(len(data)))
	if err != nil {
		return nil, nil, fmt.Errorf("pack %s: %w", id.Short(), err)
	}
	hdrOff := int64(len(data)) - 4 - n
	blobs, err := v.parsePackHeader(id, data[hdrOff:len(data)-4], hdrOff)
	if err != nil {
		return nil, nil, err
	}
	for _, b := range blobs {
		sealed := data[b.Offset : b.Offset+b.Length]
		if _, err := v.openBlob(b.ID, b.Type, sealed, int(b.RawLen), nil); err != nil {
			damage = append(damage, BlobDamage{ID: b.ID, Err: err})
		}
	}
	if !hashOK && len(damage) == 0 {
		return blobs, nil, fmt.Errorf("pack %s: %w: bytes do not hash to the name", id.Short(), ErrAuth)
	}
	return blobs, damage, nil
}

// VerifyObject checks a hash-named, sealed object (index, version, pending)
// against its name and its authentication tag.
func (v *Vault) VerifyObject(ctx context.Context, kind backend.Kind, id ID) error {
	_, err := v.loadSealedObject(ctx, kind, id)
	return err
}

// VerifyKeys checks that every key file matches its name and parses.
func (v *Vault) VerifyKeys(ctx context.Context) []error {
	var errs []error
	err := v.be.List(ctx, backend.Keys, func(i backend.Info) error {
		b, err := v.be.Get(ctx, i.Handle)
		if err != nil {
			errs = append(errs, fmt.Errorf("key %s: %w", i.Handle.Name, err))
			return nil
		}
		if sum := sha256.Sum256(b); ID(sum).String() != i.Handle.Name {
			errs = append(errs, fmt.Errorf("key %s: %w: bytes do not hash to the name", i.Handle.Name, ErrAuth))
			return nil
		}
		if _, err := decodeKeyFile(b); err != nil {
			errs = append(errs, fmt.Errorf("key %s: %w", i.Handle.Name, err))
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	return errs
}

// PendingDeletions lists prune's pending-deletion objects with their stored info.
func (v *Vault) PendingDeletions(ctx context.Context) (map[ID]backend.Info, error) {
	return v.listInfos(ctx, backend.Pending)
}

// MarkForDeletion records packs prune intends to delete; from now on their
// blobs do not count for deduplication, in this process and every new one.
func (v *Vault) MarkForDeletion(ctx context.Context, packs []ID) (ID, error) {
	plain, err := jsonMarshal(pendingDeletion{Packs: packs})
	if err != nil {
		return ID{}, err
	}
	id, err := v.putSealedObject(ctx, backend.Pending, plain)
	if err != nil {
		return id, err
	}
	v.mu.Lock()
	for _, p := range packs {
		v.excluded[p] = true
	}
	v.mu.Unlock()
	return id, nil
}

// WriteIndex stores one index object for the given packs (prune's
// consolidation) and returns its id.
func (v *Vault) WriteIndex(ctx context.Context, packs []PackBlobs) (ID, error) {
	pi := make([]packIndex, len(packs))
	for i, p := range packs {
		es := make([]blobEntry, len(p.Blobs))
		for j, b := range p.Blobs {
			es[j] = blobEntry(b)
		}
		pi[i] = packIndex{Pack: p.Pack, Blobs: es}
	}
	return v.putSealedObject(ctx, backend.Index, encodeIndex(pi))
}

// DeleteObject removes one object; a missing one is not an error (a crashed
// prune is re-run).
func (v *Vault) DeleteObject(ctx context.Context, kind backend.Kind, id ID) error {
	err := v.be.Delete(ctx, backend.Handle{Kind: kind, Name: id.String()})
	if err != nil && !errors.Is(err, backend.ErrNotFound) {
		return err
	}
	return nil
}
