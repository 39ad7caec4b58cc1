package snapshot

import (
	"context"

	"github.com/custodyhq/custody/internal/vault"
)

// Blobs is what this package needs from a vault. *vault.Vault implements it.
type Blobs interface {
	// BlobID is the vault's keyed hash of plaintext.
	BlobID(plaintext []byte) vault.ID
	// HasBlob reports whether the vault already stores id.
	HasBlob(id vault.ID) bool
	// SaveBlob stores plaintext under id unless the vault already has it.
	// It returns the bytes newly written (0 when the blob was deduplicated).
	// Safe for concurrent use; plaintext may be reused after it returns.
	SaveBlob(ctx context.Context, t vault.BlobType, id vault.ID, plaintext []byte) (stored int, err error)
	// LoadBlob returns the verified plaintext of id.
	LoadBlob(ctx context.Context, id vault.ID) ([]byte, error)
	// ChunkerKey keys the content-defined chunker so cut points leak nothing.
	ChunkerKey() [32]byte
}
