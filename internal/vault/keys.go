package vault

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"time"

	"golang.org/x/crypto/argon2"
)

// ErrWrongPassphrase: no key file of the vault opens with the passphrase.
var ErrWrongPassphrase = errors.New("wrong passphrase: no key of this vault opens with it (check CUSTODY_PASSWORD, or list keys with 'custody key list')")

// KDFParams are Argon2id's cost settings for one key file.
type KDFParams struct {
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
}

// DefaultKDF costs about what RFC 9106's second recommended option does
// (64 MiB, t=3) with less memory and more passes: 48 MiB, t=4, above
// OWASP's 46 MiB/t=1 floor. The memory is the peak of every light command
// (a no-change snapshot, log), so it is kept below what restic's scrypt uses.
var DefaultKDF = KDFParams{Time: 4, MemoryKiB: 48 << 10, Threads: 2}

// Bounds on what a key file may ask for: a planted key file must not make
// every open take minutes or gigabytes.
const (
	maxKDFTime   = 16
	maxKDFMemory = 1 << 20 // KiB: 1 GiB
)

func (p KDFParams) validate() error {
	if p.Time < 1 || p.Time > maxKDFTime || p.MemoryKiB < 8 || p.MemoryKiB > maxKDFMemory || p.Threads < 1 {
		return fmt.Errorf("argon2id parameters out of range (time %d, memory %d KiB, threads %d)", p.Time, p.MemoryKiB, p.Threads)
	}
	return nil
}

// keyFile is the stored form of one passphrase's wrap of the master key.
// Everything but "wrapped" is plaintext metadata, authenticated as the
// associated data of the wrap, so editing it breaks the key.
type keyFile struct {
	KDF     string    `json:"kdf"`
	Params  KDFParams `json:"params"`
	Salt    []byte    `json:"salt"`
	VaultID string    `json:"vault_id"`
	Created time.Time `json:"created"`
	Host    string    `json:"host,omitempty"`
	User    string    `json:"user,omitempty"`
	Wrapped []byte    `json:"wrapped"`
}

func (k *keyFile) aad() []byte {
	c := *k
	c.Wrapped = nil
	b, _ := json.Marshal(c) // plain struct: cannot fail
	return b
}

// decodeKeyFile parses a key file; it never trusts its input.
func decodeKeyFile(b []byte) (*keyFile, error) {
	var k keyFile
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if k.KDF != "argon2id" {
		return nil, fmt.Errorf("key file: unknown kdf %q", k.KDF)
	}
	if err := k.Params.validate(); err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if len(k.Salt) < 16 || len(k.Salt) > 64 {
		return nil, fmt.Errorf("key file: salt of %d bytes", len(k.Salt))
	}
	if len(k.Wrapped) != masterKeyLen+sealOverhead {
		return nil, fmt.Errorf("key file: wrapped key of %d bytes", len(k.Wrapped))
	}
	return &k, nil
}

const masterKeyLen = 32

func newKeyFile(master []byte, vaultID, passphrase string, p KDFParams) (*keyFile, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	k := &keyFile{KDF: "argon2id", Params: p, Salt: make([]byte, 32), VaultID: vaultID, Created: time.Now().UTC()}
	rand.Read(k.Salt)
	k.Host, _ = os.Hostname()
	if u, err := user.Current(); err == nil {
		k.User = u.Username
	}
	s, err := newSealer(k.wrapKey(passphrase))
	if err != nil {
		return nil, err
	}
	k.Wrapped = s.seal(nil, master, k.aad())
	return k, nil
}

func (k *keyFile) wrapKey(passphrase string) []byte {
	return argon2.IDKey([]byte(passphrase), k.Salt, k.Params.Time, k.Params.MemoryKiB, k.Params.Threads, 32)
}

// unwrap returns the master key, or ErrAuth for another passphrase.
func (k *keyFile) unwrap(passphrase string) ([]byte, error) {
	s, err := newSealer(k.wrapKey(passphrase))
	if err != nil {
		return nil, err
	}
	return s.open(nil, k.Wrapped, k.aad())
}

// subkeys are the keys derived from the master key with HKDF-SHA-256,
// salted with the vault id, one per purpose.
type subkeys struct {
	encrypt [32]byte // AES-256-GCM for every stored object
	blobID  [32]byte // keyed BLAKE3 for blob ids
	chunker [32]byte // gear table of the content-defined chunker
	ledger  [32]byte // Ed25519 seed of the audit ledger's checkpoint key
}

func deriveSubkeys(master []byte, vaultID string) (subkeys, error) {
	var sk subkeys
	for _, d := range []struct {
		info string
		out  *[32]byte
	}{{"custody v1 encrypt", &sk.encrypt}, {"custody v1 blob id", &sk.blobID}, {"custody v1 chunker", &sk.chunker}, {"custody v1 ledger", &sk.ledger}} {
		k, err := hkdf.Key(sha256.New, master, []byte(vaultID), d.info, 32)
		if err != nil {
			return sk, fmt.Errorf("derive %s key: %w", d.info, err)
		}
		copy(d.out[:], k)
	}
	return sk, nil
}
