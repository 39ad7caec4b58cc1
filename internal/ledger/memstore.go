package ledger

import (
	"context"
	"fmt"
	"sync"

	"golang.org/x/mod/sumdb/tlog"
)

// MemStore is a Store in memory: for tests, and for recomputing a tree
// from its records during verification.
type MemStore struct {
	mu      sync.Mutex
	hashes  []tlog.Hash // at tlog.StoredHashIndex positions, contiguous
	records [][]byte    // nil entries when only hashes are kept
	size    int64
}

// ReadHashes implements tlog.HashReader.
func (m *MemStore) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(m.hashes)) {
			return nil, fmt.Errorf("stored hash %d not present (have %d)", x, len(m.hashes))
		}
		out[i] = m.hashes[x]
	}
	return out, nil
}

// Size implements Store.
func (m *MemStore) Size(context.Context) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.size, nil
}

// Append implements Store.
func (m *MemStore) Append(_ context.Context, size int64, records [][]byte, hashes [][]tlog.Hash) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if size != m.size {
		return fmt.Errorf("%w: at %d, store has %d", ErrConflict, size, m.size)
	}
	if records != nil && len(records) != len(hashes) {
		return fmt.Errorf("append: %d records with %d hash sets", len(records), len(hashes))
	}
	for i, hs := range hashes {
		m.hashes = append(m.hashes, hs...)
		var rec []byte
		if records != nil {
			rec = records[i]
		}
		m.records = append(m.records, rec)
		m.size++
	}
	return nil
}

// Records implements Store.
func (m *MemStore) Records(_ context.Context, from int64) Records {
	return func(yield func(int64, []byte) bool) error {
		m.mu.Lock()
		recs := m.records[min(from, int64(len(m.records))):]
		m.mu.Unlock()
		for i, r := range recs {
			if !yield(from+int64(i), r) {
				return nil
			}
		}
		return nil
	}
}
