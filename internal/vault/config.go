package vault

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// FormatVersion is the vault format this code writes and reads.
const FormatVersion = 1

const markerFormat = "custody-vault"

// Errors about what is at a vault location.
var (
	ErrNotVault    = errors.New("not a custody vault")
	ErrNewerFormat = errors.New("vault format is newer than this custody understands")
)

// marker is the one plaintext object: it tells, without a key, that a
// location is a vault and which format it has.
type marker struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	ID      string `json:"id"`
}

func decodeMarker(b []byte) (*marker, error) {
	var m marker
	if err := json.Unmarshal(b, &m); err != nil || m.Format != markerFormat {
		return nil, fmt.Errorf("%w: its custody-vault file is not a custody vault marker", ErrNotVault)
	}
	if m.Version > FormatVersion {
		return nil, fmt.Errorf("%w: format %d, this custody reads %d: upgrade custody", ErrNewerFormat, m.Version, FormatVersion)
	}
	if m.Version < 1 || len(m.ID) != 64 {
		return nil, fmt.Errorf("%w: marker has version %d and id %q", ErrNotVault, m.Version, m.ID)
	}
	return &m, nil
}

// ChunkerParams are the content-defined chunker's sizes, fixed per vault so
// that every host cuts the same data the same way.
type ChunkerParams struct {
	Min int `json:"min"`
	Avg int `json:"avg"`
	Max int `json:"max"`
}

// config is the sealed vault configuration.
type config struct {
	Version    int           `json:"version"`
	ID         string        `json:"id"`
	Created    time.Time     `json:"created"`
	Chunker    ChunkerParams `json:"chunker"`
	PackSize   int           `json:"pack_size"`
	SigningKey []byte        `json:"signing_key"` // Ed25519 seed
}

func decodeConfig(b []byte) (*config, error) {
	var c config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	switch {
	case c.Version != FormatVersion:
		return nil, fmt.Errorf("config: format %d, want %d", c.Version, FormatVersion)
	case len(c.SigningKey) != ed25519.SeedSize:
		return nil, fmt.Errorf("config: signing key of %d bytes", len(c.SigningKey))
	case c.PackSize < 1<<20 || c.PackSize > 1<<30:
		return nil, fmt.Errorf("config: pack size %d out of range", c.PackSize)
	case c.Chunker.Min < 64 || c.Chunker.Min >= c.Chunker.Avg || c.Chunker.Avg >= c.Chunker.Max || c.Chunker.Max > 64<<20:
		return nil, fmt.Errorf("config: chunker sizes %+v out of range", c.Chunker)
	}
	return &c, nil
}
