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

// Store keeps the log: each record's bytes together with the hashes
// tlog.StoredHashes asks the log to store for it (at tlog.StoredHashIndex
// positions). ReadHashes (tlog.HashReader) returns exactly the hashes asked
// for or an error. The catalog (SQLite, PostgreSQL) is the production
// store; MemStore serves tests and verification.
type Store interface {
	tlog.HashReader
	// Size is the number of records stored.
	Size(ctx context.Context) (int64, error)
	// Append stores records [size, size+len(records)) with their hashes
	// (hashes[i] for records[i]), atomically. It fails with ErrConflict
	// when the store does not hold exactly size records, so that appenders
	// in several processes or hosts never interleave or leave a gap.
	Append(ctx context.Context, size int64, records [][]byte, hashes [][]tlog.Hash) error
	// Records yields the stored records from index from on, in order.
	Records(ctx context.Context, from int64) Records
}

// EntryStore is a Store that can take, with the records, the entries they
// encode, so that it need not parse them again for the columns it
// indexes. entries[i] is records[i] decoded.
type EntryStore interface {
	Store
	AppendEntries(ctx context.Context, size int64, records [][]byte, entries []*Entry, hashes [][]tlog.Hash) error
}

// ErrConflict: another appender extended the log first; read the size again.
var ErrConflict = errors.New("the log grew under this append")

// Log appends records to a Merkle tree and proves things about it.
type Log struct {
	store Store
	mu    sync.Mutex // one append at a time within this process
}

// New returns a log over store.
func New(store Store) *Log { return &Log{store: store} }

// Append adds records (canonical leaf bytes, see Entry.Leaf) and returns
// the index of the first. Concurrent appenders in other processes are
// serialised by the store's compare-and-append: on ErrConflict the batch
// is retried on top of what the other appender wrote.
func (l *Log) Append(ctx context.Context, records [][]byte) (int64, error) {
	return l.AppendEntries(ctx, records, nil)
}

// AppendEntries is Append with the entries the records encode
// (entries[i] is records[i]; nil when unknown), which an EntryStore
// indexes without parsing the records.
func (l *Log) AppendEntries(ctx context.Context, records [][]byte, entries []*Entry) (int64, error) {
	if entries != nil && len(entries) != len(records) {
		return 0, fmt.Errorf("append: %d records with %d entries", len(records), len(entries))
	}
	es, hasEntries := l.store.(EntryStore)
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
		if hasEntries && entries != nil {
			err = es.AppendEntries(ctx, size, records, entries, hashes)
		} else {
			err = l.store.Append(ctx, size, records, hashes)
		}
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

// HashOwner says which record's hash set (what StoredHashes returned when
// that record was appended) holds the stored hash at index x, and at which
// offset in it: a store that keeps one row per record finds hashes by it.
// A subtree hash at level L, position n covers records [n<<L, (n+1)<<L)
// and is stored with the last of them.
func HashOwner(x int64) (record, offset int64) {
	level, n := tlog.SplitStoredHashIndex(x)
	record = (n+1)<<level - 1
	return record, x - tlog.StoredHashIndex(0, record)
}
