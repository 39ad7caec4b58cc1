// Package vault is Custody's encrypted, deduplicated, content-addressed
// store: keys, sealing, blob ids, packs, the index and versions, on top of a
// backend. Everything else stores and reads data through its blob API.
package vault

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/zeebo/blake3"

	"github.com/custodyhq/custody/internal/backend"
)

// Defaults for new vaults.
var (
	DefaultChunker  = ChunkerParams{Min: 256 << 10, Avg: 1 << 20, Max: 4 << 20}
	DefaultPackSize = 16 << 20
)

// indexEvery is how many packs a writer uploads before it writes an index
// object for them, so that an interrupted long snapshot keeps its progress.
const indexEvery = 32

// Vault is an open vault. Its methods are safe for concurrent use.
type Vault struct {
	be       backend.Backend
	id       string
	cfg      *config
	master   []byte
	keyName  string
	keys     subkeys
	seal     *sealer
	signKey  ed25519.PrivateKey
	zenc     *zstd.Encoder
	zfast    *zstd.Encoder
	zdec     *zstd.Decoder
	zdecTree *zstd.Decoder // trees may be larger than chunks
	cacheDir string
	log      *slog.Logger

	mu        sync.Mutex
	idx       *diskIndex
	excluded  map[ID]bool     // packs marked for deletion: their blobs count as absent for dedup
	written   map[ID]location // blobs uploaded by this process
	inflight  map[ID]struct{} // blobs being packed by this process
	packers   [2]*packer      // by BlobType
	unindexed []packIndex     // uploaded packs not yet in an index object
}

// Options tune opening a vault.
type Options struct {
	// CacheDir holds derived local data (the merged index). Empty: the
	// user's cache directory, or a temporary one if there is none.
	CacheDir string
	Logger   *slog.Logger
}

// InitOptions tune a new vault.
type InitOptions struct {
	KDF KDFParams // zero: DefaultKDF
}

// Init creates a vault in an empty backend location. A location holding
// only the leftovers of an interrupted Init (no marker yet) is reused.
func Init(ctx context.Context, be backend.Backend, passphrase string, opts InitOptions) error {
	if passphrase == "" {
		return errors.New("init: empty passphrase: set CUSTODY_PASSWORD or type one at the prompt")
	}
	if _, err := be.Stat(ctx, backend.Handle{Kind: backend.Marker}); err == nil {
		return fmt.Errorf("init: %s is already a custody vault", be.Location())
	} else if !errors.Is(err, backend.ErrNotFound) {
		return fmt.Errorf("init: %w", err)
	}
	if err := removeInitLeftovers(ctx, be); err != nil {
		return err
	}
	if opts.KDF == (KDFParams{}) {
		opts.KDF = DefaultKDF
	}
	var idb [32]byte
	rand.Read(idb[:])
	id := hex.EncodeToString(idb[:])
	master := make([]byte, masterKeyLen)
	rand.Read(master)
	seed := make([]byte, ed25519.SeedSize)
	rand.Read(seed)
	cfg := &config{Version: FormatVersion, ID: id, Created: time.Now().UTC(), Chunker: DefaultChunker, PackSize: DefaultPackSize, SigningKey: seed}
	sk, err := deriveSubkeys(master, id)
	if err != nil {
		return err
	}
	s, err := newSealer(sk.encrypt[:])
	if err != nil {
		return err
	}
	plain, _ := json.Marshal(cfg)
	if err := be.Put(ctx, backend.Handle{Kind: backend.Config}, s.seal(nil, plain, []byte("config"))); err != nil {
		return fmt.Errorf("init: write config: %w", err)
	}
	if _, err := putKey(ctx, be, master, id, passphrase, opts.KDF); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	// The marker goes last: until it exists the location is not a vault,
	// and a crashed Init is simply run again.
	m, _ := json.Marshal(marker{Format: markerFormat, Version: FormatVersion, ID: id})
	if err := be.Put(ctx, backend.Handle{Kind: backend.Marker}, m); err != nil {
		return fmt.Errorf("init: write marker: %w", err)
	}
	return nil
}

// removeInitLeftovers clears config and keys of an interrupted Init and
// refuses any location that holds anything else.
func removeInitLeftovers(ctx context.Context, be backend.Backend) error {
	for _, k := range []backend.Kind{backend.Packs, backend.Index, backend.Versions, backend.Pending} {
		found := false
		err := be.List(ctx, k, func(backend.Info) error { found = true; return errStopList })
		if err != nil && !errors.Is(err, errStopList) {
			return fmt.Errorf("init: %w", err)
		}
		if found {
			return fmt.Errorf("init: %s holds %s objects but no custody-vault marker: refusing to write into it; choose an empty directory", be.Location(), k)
		}
	}
	var stale []backend.Handle
	if err := be.List(ctx, backend.Keys, func(i backend.Info) error { stale = append(stale, i.Handle); return nil }); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	if _, err := be.Stat(ctx, backend.Handle{Kind: backend.Config}); err == nil {
		stale = append(stale, backend.Handle{Kind: backend.Config})
	}
	for _, h := range stale {
		if err := be.Delete(ctx, h); err != nil && !errors.Is(err, backend.ErrNotFound) {
			return fmt.Errorf("init: remove leftover %s: %w", h, err)
		}
	}
	return nil
}

var errStopList = errors.New("stop listing")

func putKey(ctx context.Context, be backend.Backend, master []byte, vaultID, passphrase string, p KDFParams) (string, error) {
	kf, err := newKeyFile(master, vaultID, passphrase, p)
	if err != nil {
		return "", err
	}
	b, _ := json.MarshalIndent(kf, "", "  ")
	sum := sha256.Sum256(b)
	name := hex.EncodeToString(sum[:])
	if err := be.Put(ctx, backend.Handle{Kind: backend.Keys, Name: name}, b); err != nil {
		return "", fmt.Errorf("write key: %w", err)
	}
	return name, nil
}

// Open unlocks the vault at be with passphrase and loads its index.
func Open(ctx context.Context, be backend.Backend, passphrase string, opts Options) (*Vault, error) {
	mb, err := be.Get(ctx, backend.Handle{Kind: backend.Marker})
	if errors.Is(err, backend.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s has no custody-vault file (create a vault with 'custody init')", ErrNotVault, be.Location())
	}
	if err != nil {
		return nil, fmt.Errorf("open vault: %w", err)
	}
	m, err := decodeMarker(mb)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", be.Location(), err)
	}
	v := &Vault{be: be, id: m.ID, log: opts.Logger, written: map[ID]location{}, inflight: map[ID]struct{}{}, excluded: map[ID]bool{}}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	if err := v.unlock(ctx, passphrase); err != nil {
		return nil, err
	}
	// Argon2id just used tens of MiB that are garbage now: hand them back
	// before the real work, so they do not add to the process's peak.
	debug.FreeOSMemory()
	if err := v.loadConfig(ctx); err != nil {
		return nil, err
	}
	n := runtime.GOMAXPROCS(0)
	v.zenc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(n), zstd.WithLowerEncoderMem(true))
	v.zfast, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(n), zstd.WithLowerEncoderMem(true))
	v.zdec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(n), zstd.WithDecoderMaxMemory(uint64(v.cfg.Chunker.Max)*2))
	// Trees of huge directories (an image folder of a million files) are
	// far larger than any chunk.
	v.zdecTree, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(MaxTreeBlob))
	v.cacheDir = opts.CacheDir
	if err := v.loadIndex(ctx); err != nil {
		v.Close()
		return nil, err
	}
	if err := v.loadPending(ctx); err != nil {
		v.Close()
		return nil, err
	}
	return v, nil
}

// unlock tries every key file with the passphrase.
func (v *Vault) unlock(ctx context.Context, passphrase string) error {
	var names []string
	if err := v.be.List(ctx, backend.Keys, func(i backend.Info) error { names = append(names, i.Handle.Name); return nil }); err != nil {
		return fmt.Errorf("list keys: %w", err)
	}
	if len(names) == 0 {
		return fmt.Errorf("%w: %s has no keys", ErrNotVault, v.be.Location())
	}
	for _, name := range names {
		b, err := v.be.Get(ctx, backend.Handle{Kind: backend.Keys, Name: name})
		if err != nil {
			return fmt.Errorf("read key %s: %w", name[:8], err)
		}
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != name {
			v.log.Warn("key file does not match its name; skipped", "key", name[:8])
			continue
		}
		kf, err := decodeKeyFile(b)
		if err != nil || kf.VaultID != v.id {
			v.log.Warn("unusable key file skipped", "key", name[:8], "err", err)
			continue
		}
		master, err := kf.unwrap(passphrase)
		if errors.Is(err, ErrAuth) {
			continue
		}
		if err != nil {
			return err
		}
		v.master, v.keyName = master, name
		return nil
	}
	return ErrWrongPassphrase
}

func (v *Vault) loadConfig(ctx context.Context) error {
	var err error
	if v.keys, err = deriveSubkeys(v.master, v.id); err != nil {
		return err
	}
	if v.seal, err = newSealer(v.keys.encrypt[:]); err != nil {
		return err
	}
	sealed, err := v.be.Get(ctx, backend.Handle{Kind: backend.Config})
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	plain, err := v.seal.open(nil, sealed, []byte("config"))
	if err != nil {
		return fmt.Errorf("vault config: %w", err)
	}
	if v.cfg, err = decodeConfig(plain); err != nil {
		return err
	}
	if v.cfg.ID != v.id {
		return fmt.Errorf("vault config belongs to vault %s, marker says %s: the vault was tampered with", v.cfg.ID[:8], v.id[:8])
	}
	v.signKey = ed25519.NewKeyFromSeed(v.cfg.SigningKey)
	return nil
}

// Close releases the index mapping and throws away packs not yet stored
// (after a failure, or without Flush): their temporary files must not
// outlive the process, least of all on a full disk.
func (v *Vault) Close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	for i, p := range v.packers {
		if p != nil {
			p.discard(v.be)
			v.packers[i] = nil
		}
	}
	v.idx.close()
	v.idx = nil
	if v.zenc != nil {
		v.zenc.Close()
		v.zfast.Close()
		v.zdec.Close()
		v.zdecTree.Close()
	}
	return nil
}

// ID is the vault's random identity.
func (v *Vault) ID() string { return v.id }

// Backend is where the vault lives.
func (v *Vault) Backend() backend.Backend { return v.be }

// KeyName is the key file that opened the vault.
func (v *Vault) KeyName() string { return v.keyName }

// ChunkerKey keys the content-defined chunker.
func (v *Vault) ChunkerKey() [32]byte { return v.keys.chunker }

// Chunker returns the vault's chunk sizes.
func (v *Vault) Chunker() ChunkerParams { return v.cfg.Chunker }

// LedgerSeed is the Ed25519 seed of the audit ledger's checkpoint key,
// derived from the master key: every holder of a passphrase signs the same
// log, and the verifier key can be handed to auditors who hold none.
func (v *Vault) LedgerSeed() []byte { return v.keys.ledger[:] }

// PublicKey verifies the vault's version signatures.
func (v *Vault) PublicKey() ed25519.PublicKey { return v.signKey.Public().(ed25519.PublicKey) }

// BlobID is the keyed BLAKE3 hash of plaintext.
func (v *Vault) BlobID(plaintext []byte) ID {
	h, _ := blake3.NewKeyed(v.keys.blobID[:])
	h.Write(plaintext)
	var id ID
	h.Sum(id[:0])
	return id
}

// AddKey wraps the master key for another passphrase and returns the new key's name.
func (v *Vault) AddKey(ctx context.Context, passphrase string, p KDFParams) (string, error) {
	if passphrase == "" {
		return "", errors.New("add key: empty passphrase")
	}
	if p == (KDFParams{}) {
		p = DefaultKDF
	}
	return putKey(ctx, v.be, v.master, v.id, passphrase, p)
}
