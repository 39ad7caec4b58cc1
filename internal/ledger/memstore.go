package ledger

import (
	"context"
	"fmt"
	"sync"

	"golang.org/x/mod/sumdb/tlog"
)

// MemStore is a HashStore in memory: for tests, and for recomputing a tree
// from its records during verification.
type MemStore struct {
	mu     sync.Mutex
	hashes []tlog.Hash // at tlog.StoredHashIndex positions, contiguous
	size   int64
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

// Size implements HashStore.
func (m *MemStore) Size(context.Context) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.size, nil
}

// AppendHashes implements HashStore.
func (m *MemStore) AppendHashes(_ context.Context, size int64, perRecord [][]tlog.Hash) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if size != m.size {
		return fmt.Errorf("%w: at %d, store has %d", ErrConflict, size, m.size)
	}
	for _, hs := range perRecord {
		m.hashes = append(m.hashes, hs...)
		m.size++
	}
	return nil
}
