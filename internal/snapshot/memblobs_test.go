package snapshot

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"

	"github.com/custodyhq/custody/internal/vault"
)

// memBlobs is an in-memory Blobs for unit tests of this package; the
// integration tests use a real vault.
type memBlobs struct {
	mu    sync.Mutex
	blobs map[vault.ID][]byte
	saves int
}

func newMemBlobs() *memBlobs { return &memBlobs{blobs: map[vault.ID][]byte{}} }

func (m *memBlobs) BlobID(p []byte) vault.ID { return sha256.Sum256(p) }

func (m *memBlobs) HasBlob(id vault.ID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.blobs[id]
	return ok
}

func (m *memBlobs) SaveBlob(_ context.Context, _ vault.BlobType, id vault.ID, p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.blobs[id]; ok {
		return 0, nil
	}
	m.blobs[id] = append([]byte(nil), p...)
	m.saves++
	return len(p) + 1, nil
}

func (m *memBlobs) LoadBlob(_ context.Context, id vault.ID) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.blobs[id]
	if !ok {
		return nil, fmt.Errorf("blob %s: not found", id.Short())
	}
	return append([]byte(nil), b...), nil
}

func (m *memBlobs) ChunkerKey() [32]byte { return [32]byte{1, 2, 3} }
