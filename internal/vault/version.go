package vault

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/custodyhq/custody/internal/backend"
)

// Version is an immutable, signed snapshot of a dataset. It is stored
// sealed, as {"version": ..., "signature": ...}, and named by the SHA-256 of
// the stored bytes; the signature is Ed25519 over versionSigContext followed
// by the JSON of the version.
type Version struct {
	Dataset  string    `json:"dataset"`
	Stage    string    `json:"stage,omitempty"`
	Tree     ID        `json:"tree"`
	Parent   *ID       `json:"parent,omitempty"`
	Time     time.Time `json:"time"`
	Host     string    `json:"host,omitempty"`
	User     string    `json:"user,omitempty"`
	UID      uint32    `json:"uid"`
	Message  string    `json:"message,omitempty"`
	Source   string    `json:"source,omitempty"`
	Files    uint64    `json:"files"`
	Dirs     uint64    `json:"dirs"`
	Bytes    uint64    `json:"bytes"`
	NewBytes uint64    `json:"new_bytes"`
	Stored   uint64    `json:"stored_bytes"`
	Skipped  []string  `json:"skipped,omitempty"`
	Changed  []string  `json:"changed_while_read,omitempty"`

	// Set when loaded, not stored.
	ID       ID        `json:"-"`
	StoredAt time.Time `json:"-"` // the backend's clock, for retention
}

const versionSigContext = "custody version v1\n"

type signedVersion struct {
	Version   json.RawMessage `json:"version"`
	Signature []byte          `json:"signature"`
}

// ErrBadSignature: a version's signature does not verify with the vault's key.
var ErrBadSignature = errors.New("signature does not verify")

// SaveVersion signs and stores v and returns its id. Call Flush first: a
// version must only reference blobs that are indexed.
func (vt *Vault) SaveVersion(ctx context.Context, v *Version) (ID, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return ID{}, fmt.Errorf("encode version: %w", err)
	}
	sig := ed25519.Sign(vt.signKey, append([]byte(versionSigContext), body...))
	plain, _ := json.Marshal(signedVersion{Version: body, Signature: sig})
	id, err := vt.putSealedObject(ctx, backend.Versions, plain)
	if err != nil {
		return id, err
	}
	v.ID = id
	return id, nil
}

// LoadVersion reads, authenticates and verifies one version.
func (vt *Vault) LoadVersion(ctx context.Context, id ID) (*Version, error) {
	plain, err := vt.loadSealedObject(ctx, backend.Versions, id)
	if err != nil {
		return nil, err
	}
	v, err := decodeVersion(plain, vt.PublicKey())
	if err != nil {
		return nil, fmt.Errorf("version %s: %w", id.Short(), err)
	}
	v.ID = id
	if info, err := vt.be.Stat(ctx, backend.Handle{Kind: backend.Versions, Name: id.String()}); err == nil {
		v.StoredAt = info.ModTime
	}
	return v, nil
}

func decodeVersion(plain []byte, pub ed25519.PublicKey) (*Version, error) {
	var sv signedVersion
	if err := json.Unmarshal(plain, &sv); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if !ed25519.Verify(pub, append([]byte(versionSigContext), sv.Version...), sv.Signature) {
		return nil, ErrBadSignature
	}
	var v Version
	if err := json.Unmarshal(sv.Version, &v); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	return &v, nil
}

// VersionIDs lists every version's id.
func (vt *Vault) VersionIDs(ctx context.Context) ([]ID, error) {
	return vt.listIDs(ctx, backend.Versions)
}

// Versions loads every version, newest first. A version that fails to load
// is an error: prune must not decide on partial knowledge.
func (vt *Vault) Versions(ctx context.Context) ([]*Version, error) {
	vs, bad, err := vt.ReadableVersions(ctx)
	if err != nil {
		return nil, err
	}
	if len(bad) > 0 {
		return nil, bad[0]
	}
	return vs, nil
}

// ReadableVersions loads every version it can, newest first, and returns
// the errors of those it cannot (damaged or forged), so that one bad
// version does not stop work on every other.
func (vt *Vault) ReadableVersions(ctx context.Context) ([]*Version, []error, error) {
	ids, err := vt.VersionIDs(ctx)
	if err != nil {
		return nil, nil, err
	}
	loaded := make([]*Version, len(ids))
	errs := make([]error, len(ids))
	var g errgroup.Group
	g.SetLimit(8)
	for i, id := range ids {
		g.Go(func() error {
			loaded[i], errs[i] = vt.LoadVersion(ctx, id)
			return nil
		})
	}
	g.Wait()
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	var out []*Version
	var bad []error
	for i := range ids {
		switch {
		case errs[i] == nil:
			out = append(out, loaded[i])
		case errors.Is(errs[i], backend.ErrNotFound):
			// deleted since it was listed (a concurrent forget)
		default:
			bad = append(bad, fmt.Errorf("%w (run 'custody check'; remove it with 'custody forget %s')", errs[i], ids[i].String()[:12]))
			vt.log.Warn("skipping unreadable version", "version", ids[i].Short(), "err", errs[i])
		}
	}
	slices.SortStableFunc(out, func(a, b *Version) int { return b.Time.Compare(a.Time) })
	return out, bad, nil
}

// Errors of version resolution.
var (
	ErrVersionNotFound  = errors.New("no such version")
	ErrAmbiguousVersion = errors.New("ambiguous version prefix")
	ErrShortPrefix      = errors.New("a version prefix needs at least 8 hex characters")
)

// ResolveVersion finds the version whose id starts with prefix (8+ hex
// characters), or the newest version ("latest", of dataset if not empty).
func (vt *Vault) ResolveVersion(ctx context.Context, prefix, dataset string) (*Version, error) {
	if prefix == "latest" {
		vs, _, err := vt.ReadableVersions(ctx)
		if err != nil {
			return nil, err
		}
		for _, v := range vs {
			if dataset == "" || v.Dataset == dataset {
				return v, nil
			}
		}
		if dataset != "" {
			return nil, fmt.Errorf("%w: dataset %q has no versions", ErrVersionNotFound, dataset)
		}
		return nil, fmt.Errorf("%w: the vault has no versions yet", ErrVersionNotFound)
	}
	id, err := vt.ResolveVersionID(ctx, prefix)
	if err != nil {
		return nil, err
	}
	return vt.LoadVersion(ctx, id)
}

// ResolveVersionID finds the id that prefix (8+ hex characters) names,
// without loading the version: forget uses it to remove damaged ones.
func (vt *Vault) ResolveVersionID(ctx context.Context, prefix string) (ID, error) {
	prefix = strings.ToLower(prefix)
	if len(prefix) < 8 {
		return ID{}, fmt.Errorf("%w (got %q)", ErrShortPrefix, prefix)
	}
	ids, err := vt.VersionIDs(ctx)
	if err != nil {
		return ID{}, err
	}
	var match []ID
	for _, id := range ids {
		if strings.HasPrefix(id.String(), prefix) {
			match = append(match, id)
		}
	}
	switch len(match) {
	case 0:
		return ID{}, fmt.Errorf("%w: %s (list versions with 'custody log')", ErrVersionNotFound, prefix)
	case 1:
		return match[0], nil
	default:
		return ID{}, fmt.Errorf("%w: %s matches %d versions; give more characters", ErrAmbiguousVersion, prefix, len(match))
	}
}

// DeleteVersion removes a version object (forget). Its data stays until prune.
func (vt *Vault) DeleteVersion(ctx context.Context, id ID) error {
	return vt.be.Delete(ctx, backend.Handle{Kind: backend.Versions, Name: id.String()})
}
