package vault

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/custodyhq/custody/internal/backend"
)

// putHashed stores data under the hex SHA-256 of its bytes, so that anyone
// can check a stored object against its name without a key.
func (v *Vault) putHashed(ctx context.Context, kind backend.Kind, data []byte) (ID, error) {
	id := ID(sha256.Sum256(data))
	err := v.be.Put(ctx, backend.Handle{Kind: kind, Name: id.String()}, data)
	if err != nil && !errors.Is(err, backend.ErrExists) {
		return id, err
	}
	return id, nil
}

// getHashed reads a hash-named object and checks it against its name.
func (v *Vault) getHashed(ctx context.Context, kind backend.Kind, id ID) ([]byte, error) {
	b, err := v.be.Get(ctx, backend.Handle{Kind: kind, Name: id.String()})
	if err != nil {
		return nil, err
	}
	if ID(sha256.Sum256(b)) != id {
		return nil, fmt.Errorf("%s/%s: %w: bytes do not hash to the name", kind, id.Short(), ErrAuth)
	}
	return b, nil
}

// listIDs lists the hash-named objects of a kind; other names are ignored.
func (v *Vault) listIDs(ctx context.Context, kind backend.Kind) ([]ID, error) {
	var ids []ID
	err := v.be.List(ctx, kind, func(i backend.Info) error {
		if id, err := ParseID(i.Handle.Name); err == nil {
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", kind, err)
	}
	slices.SortFunc(ids, func(a, b ID) int { return compareIDs(a, b) })
	return ids, nil
}

func compareIDs(a, b ID) int {
	for i := range a {
		if a[i] != b[i] {
			return int(a[i]) - int(b[i])
		}
	}
	return 0
}

// LoadIndexObject reads, authenticates and parses one index object.
func (v *Vault) loadIndexObject(ctx context.Context, id ID) ([]packIndex, error) {
	b, err := v.getHashed(ctx, backend.Index, id)
	if err != nil {
		return nil, fmt.Errorf("index %s: %w", id.Short(), err)
	}
	plain, err := v.seal.open(nil, b, []byte("index"))
	if err != nil {
		return nil, fmt.Errorf("index %s: %w", id.Short(), err)
	}
	packs, err := decodeIndex(plain)
	if err != nil {
		return nil, fmt.Errorf("index %s: %w", id.Short(), err)
	}
	return packs, nil
}

// maxMergeBatch bounds the entries held in memory while the index cache is
// brought up to date; each batch is merged into the mapped file.
const maxMergeBatch = 1 << 20

// loadIndex brings the local index cache up to date with the vault's index
// objects and maps it.
func (v *Vault) loadIndex(ctx context.Context) error {
	objects, err := v.listIDs(ctx, backend.Index)
	if err != nil {
		return err
	}
	dir := v.cacheDir
	if dir == "" {
		if dir = os.Getenv("CUSTODY_CACHE"); dir == "" {
			if base, err := os.UserCacheDir(); err == nil {
				dir = filepath.Join(base, "custody")
			} else {
				dir = filepath.Join(os.TempDir(), fmt.Sprintf("custody-cache-%d", os.Getuid()))
			}
		}
	}
	path := filepath.Join(dir, v.id, "index")
	cur, err := openDiskIndex(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		v.log.Warn("index cache unreadable; rebuilding", "err", err)
	}
	have := map[ID]bool{}
	if cur != nil {
		for _, o := range cur.objects {
			have[o] = true
		}
	}
	var missing []ID
	for _, o := range objects {
		if !have[o] {
			missing = append(missing, o)
		}
		delete(have, o)
	}
	if cur != nil && len(have) > 0 { // objects were removed (prune): start over
		cur.close()
		cur, missing = nil, objects
	}
	if cur == nil && len(missing) == 0 && len(objects) == 0 {
		return nil
	}
	merged := []ID{}
	if cur != nil {
		merged = slices.Clone(cur.objects)
	}
	for len(missing) > 0 || cur == nil {
		var add []newEntry
		for len(missing) > 0 && len(add) < maxMergeBatch {
			packs, err := v.loadIndexObject(ctx, missing[0])
			if err != nil {
				cur.close()
				return fmt.Errorf("%w (run 'custody check')", err)
			}
			for _, p := range packs {
				for _, e := range p.Blobs {
					add = append(add, newEntry{id: e.ID, loc: location{Pack: p.Pack, Type: e.Type, Offset: e.Offset, Length: e.Length, RawLen: e.RawLen}})
				}
			}
			merged = append(merged, missing[0])
			missing = missing[1:]
		}
		if err := writeMergedIndex(path, cur, add, merged); err != nil {
			cur.close()
			return fmt.Errorf("write index cache under %s: %w (set CUSTODY_CACHE to a writable directory)", dir, err)
		}
		cur.close()
		if cur, err = openDiskIndex(path); err != nil {
			return err
		}
	}
	v.idx = cur
	return nil
}

// pendingDeletion is prune's record of packs it intends to delete.
type pendingDeletion struct {
	Packs []ID `json:"packs"`
}

func (v *Vault) loadPending(ctx context.Context) error {
	ids, err := v.listIDs(ctx, backend.Pending)
	if err != nil {
		return err
	}
	for _, id := range ids {
		p, err := v.LoadPending(ctx, id)
		if err != nil {
			return err
		}
		for _, pk := range p.Packs {
			v.excluded[pk] = true
		}
	}
	return nil
}

// LoadPending reads one pending-deletion object.
func (v *Vault) LoadPending(ctx context.Context, id ID) (*pendingDeletion, error) {
	plain, err := v.loadSealedObject(ctx, backend.Pending, id)
	if err != nil {
		return nil, err
	}
	p, err := decodePending(plain)
	if err != nil {
		return nil, fmt.Errorf("pending %s: %w", id.Short(), err)
	}
	return p, nil
}

func decodePending(plain []byte) (*pendingDeletion, error) {
	var p pendingDeletion
	if err := json.Unmarshal(plain, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

func (v *Vault) loadSealedObject(ctx context.Context, kind backend.Kind, id ID) ([]byte, error) {
	b, err := v.getHashed(ctx, kind, id)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", kind, id.Short(), err)
	}
	plain, err := v.seal.open(nil, b, []byte(kind))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", kind, id.Short(), err)
	}
	return plain, nil
}

func (v *Vault) putSealedObject(ctx context.Context, kind backend.Kind, plain []byte) (ID, error) {
	id, err := v.putHashed(ctx, kind, v.seal.seal(nil, plain, []byte(kind)))
	if err != nil {
		return id, fmt.Errorf("store %s: %w", kind, err)
	}
	return id, nil
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// PutCheckpoint stores a signed ledger checkpoint. Checkpoints are public
// notes, stored as they are (not sealed) and named by their SHA-256.
func (v *Vault) PutCheckpoint(ctx context.Context, signed []byte) error {
	_, err := v.putHashed(ctx, backend.Checkpoints, signed)
	if err != nil {
		return fmt.Errorf("store checkpoint: %w", err)
	}
	return nil
}

// Checkpoints returns every stored ledger checkpoint (unverified bytes).
func (v *Vault) Checkpoints(ctx context.Context) ([][]byte, error) {
	ids, err := v.listIDs(ctx, backend.Checkpoints)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, id := range ids {
		b, err := v.getHashed(ctx, backend.Checkpoints, id)
		if err != nil {
			return nil, fmt.Errorf("checkpoint %s: %w", id.Short(), err)
		}
		out = append(out, b)
	}
	return out, nil
}
