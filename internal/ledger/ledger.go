// Package ledger is Custody's tamper-evident audit log: an append-only
// Merkle tree of canonical JSON entries with RFC 6962 hashing
// (golang.org/x/mod/sumdb/tlog), signed checkpoints in the C2SP
// tlog-checkpoint format (golang.org/x/mod/sumdb/note, Ed25519), and
// inclusion and consistency proofs that anyone can check with those two
// packages alone.
//
// Storage is not this package's job: a HashStore keeps the tree's stored
// hashes (the catalog, SQLite or PostgreSQL, in production; memory in tests)
// and the entries themselves live wherever the caller keeps them.
package ledger

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/mod/sumdb/tlog"
)

// HashStore keeps the hashes tlog.StoredHashes asks a log to store, at
// tlog.StoredHashIndex positions. ReadHashes (tlog.HashReader) must return
// exactly the hashes asked for or an error.
type HashStore interface {
	tlog.HashReader
	// Size is the number of records whose hashes are stored.
	Size(ctx context.Context) (int64, error)
	// AppendHashes stores the hashes of records [size, size+len(perRecord)):
	// perRecord[i] are those tlog.StoredHashes returned for record size+i.
	// It fails with ErrConflict when the store does not hold exactly size
	// records, so that two appenders can never interleave.
	AppendHashes(ctx context.Context, size int64, perRecord [][]tlog.Hash) error
}

// ErrConflict: another appender extended the log first; read the size again.
var ErrConflict = errors.New("the log grew under this append")

// Log appends records to a Merkle tree and proves things about it.
type Log struct {
	store HashStore
	mu    sync.Mutex // one append at a time within this process
}

// New returns a log over store.
func New(store HashStore) *Log { return &Log{store: store} }

// Append adds records (canonical leaf bytes, see Entry.Leaf) and returns
// the index of the first. Concurrent appenders in other processes are
// serialised by the store's compare-and-append: on ErrConflict the batch
// is retried on top of what the other appender wrote.
func (l *Log) Append(ctx context.Context, records [][]byte) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for attempt := 0; ; attempt++ {
		size, err := l.store.Size(ctx)
		if err != nil {
			return 0, fmt.Errorf("append: %w", err)
		}
		hashes, err := computeStoredHashes(size, records, l.store)
		if err != nil {
			return 0, fmt.Errorf("append: %w", err)
		}
		err = l.store.AppendHashes(ctx, size, hashes)
		if err == nil {
			return size, nil
		}
		if !errors.Is(err, ErrConflict) || attempt >= 100 {
			return 0, fmt.Errorf("append: %w", err)
		}
	}
}

// computeStoredHashes runs tlog.StoredHashes for each record in turn; the
// hashes of earlier records of the same batch are read from memory.
func computeStoredHashes(size int64, records [][]byte, store tlog.HashReader) ([][]tlog.Hash, error) {
	pending := map[int64]tlog.Hash{}
	reader := tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(indexes))
		var missing []int64
		var at []int
		for i, x := range indexes {
			if h, ok := pending[x]; ok {
				out[i] = h
			} else {
				missing = append(missing, x)
				at = append(at, i)
			}
		}
		if len(missing) > 0 {
			hs, err := store.ReadHashes(missing)
			if err != nil {
				return nil, err
			}
			if len(hs) != len(missing) {
				return nil, fmt.Errorf("hash store returned %d hashes for %d indexes", len(hs), len(missing))
			}
			for j, h := range hs {
				out[at[j]] = h
			}
		}
		return out, nil
	})
	all := make([][]tlog.Hash, len(records))
	for i, rec := range records {
		n := size + int64(i)
		hs, err := tlog.StoredHashes(n, rec, reader)
		if err != nil {
			return nil, fmt.Errorf("hash record %d: %w", n, err)
		}
		base := tlog.StoredHashIndex(0, n)
		for j, h := range hs {
			pending[base+int64(j)] = h
		}
		all[i] = hs
	}
	return all, nil
}

// Tree returns the current size and root hash.
func (l *Log) Tree(ctx context.Context) (tlog.Tree, error) {
	size, err := l.store.Size(ctx)
	if err != nil {
		return tlog.Tree{}, err
	}
	return treeAt(l.store, size)
}

func treeAt(r tlog.HashReader, size int64) (tlog.Tree, error) {
	if size == 0 {
		return tlog.Tree{N: 0, Hash: emptyRoot}, nil
	}
	h, err := tlog.TreeHash(size, r)
	if err != nil {
		return tlog.Tree{}, fmt.Errorf("tree hash at %d: %w", size, err)
	}
	return tlog.Tree{N: size, Hash: h}, nil
}

// emptyRoot is RFC 6962's hash of the empty tree: SHA-256 of nothing.
var emptyRoot = tlog.Hash{0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55}

// ProveInclusion proves that record index is in the tree of size treeSize
// (RFC 6962 section 2.1.1 audit path).
func (l *Log) ProveInclusion(index, treeSize int64) (tlog.RecordProof, error) {
	if index < 0 || index >= treeSize {
		return nil, fmt.Errorf("prove: record %d is not in a tree of %d records", index, treeSize)
	}
	return tlog.ProveRecord(treeSize, index, l.store)
}

// ProveConsistency proves that the tree of size newSize extends the tree
// of size oldSize (RFC 6962 section 2.1.2).
func (l *Log) ProveConsistency(oldSize, newSize int64) (tlog.TreeProof, error) {
	if oldSize < 0 || oldSize > newSize {
		return nil, fmt.Errorf("prove: a tree of %d records cannot extend one of %d", newSize, oldSize)
	}
	return tlog.ProveTree(newSize, oldSize, l.store)
}
