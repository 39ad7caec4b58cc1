package vault

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// ErrAuth means stored bytes failed authentication: damaged or forged.
var ErrAuth = errors.New("authentication failed (damaged or forged data)")

// sealOverhead is what sealing adds to a plaintext: nonce and GCM tag.
const sealOverhead = 12 + 16

// sealer is AES-256-GCM with a random 96-bit nonce per message, stored in
// front of the ciphertext: nonce || ciphertext || tag. The associated data
// binds a message to its role (a blob's id, "index", "config", ...), so a
// valid ciphertext cannot be moved to another place.
type sealer struct{ aead cipher.AEAD }

func newSealer(key []byte) (*sealer, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("new cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("new gcm: %w", err)
	}
	return &sealer{aead: aead}, nil
}

// seal appends the sealed form of plaintext to dst.
func (s *sealer) seal(dst, plaintext, aad []byte) []byte {
	n := len(dst)
	dst = append(dst, make([]byte, 12)...)
	if _, err := rand.Read(dst[n : n+12]); err != nil {
		panic("crypto/rand failed: " + err.Error()) // documented never to fail on Linux
	}
	return s.aead.Seal(dst, dst[n:n+12], plaintext, aad)
}

// openInPlace authenticates and decrypts sealed, overwriting it: the
// plaintext is returned in sealed's own memory, saving an allocation.
func (s *sealer) openInPlace(sealed, aad []byte) ([]byte, error) {
	if len(sealed) < sealOverhead {
		return nil, fmt.Errorf("%w: %d bytes is shorter than nonce and tag", ErrAuth, len(sealed))
	}
	out, err := s.aead.Open(sealed[12:12], sealed[:12], sealed[12:], aad)
	if err != nil {
		return nil, ErrAuth
	}
	return out, nil
}

// open authenticates and decrypts sealed, appending the plaintext to dst.
func (s *sealer) open(dst, sealed, aad []byte) ([]byte, error) {
	if len(sealed) < sealOverhead {
		return nil, fmt.Errorf("%w: %d bytes is shorter than nonce and tag", ErrAuth, len(sealed))
	}
	out, err := s.aead.Open(dst, sealed[:12], sealed[12:], aad)
	if err != nil {
		return nil, ErrAuth
	}
	return out, nil
}
