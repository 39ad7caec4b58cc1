package vault

import (
	"encoding/hex"
	"errors"
	"fmt"
)

// ID names a blob (keyed BLAKE3 of its plaintext) or a stored object
// (SHA-256 of its bytes). Always 32 bytes.
type ID [32]byte

// String is the lowercase hex form.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Short is the first 8 hex characters, for people.
func (id ID) Short() string { return id.String()[:8] }

// IsZero reports whether id is the zero ID (no object).
func (id ID) IsZero() bool { return id == ID{} }

// MarshalText encodes id as hex.
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText decodes a 64-character hex id.
func (id *ID) UnmarshalText(b []byte) error {
	p, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = p
	return nil
}

var errBadID = errors.New("an id is 64 hex characters")

// ParseID parses a full 64-character hex id.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 64 {
		return id, fmt.Errorf("parse id %q: %w", s, errBadID)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("parse id %q: %w", s, errBadID)
	}
	return id, nil
}

// BlobType says which packs a blob goes to: file contents and trees are
// packed apart so that metadata can be read without touching data.
type BlobType uint8

const (
	DataBlob BlobType = 0
	TreeBlob BlobType = 1
)

func (t BlobType) String() string {
	if t == TreeBlob {
		return "tree"
	}
	return "data"
}
