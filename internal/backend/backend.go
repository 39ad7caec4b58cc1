// Package backend stores a vault's objects: write-once, named blobs of bytes
// grouped by kind, in a local directory or (later) an object store.
package backend

import (
	"context"
	"errors"
	"os"
	"time"
)

// Kind groups objects; each kind is a folder (local) or a key prefix (S3).
type Kind string

// The kinds a vault uses. Marker and Config are singletons named by Kind alone.
const (
	Marker   Kind = "marker"   // plaintext "custody-vault" file: format name, version, vault id
	Config   Kind = "config"   // sealed vault configuration
	Keys     Kind = "keys"     // passphrase-wrapped master keys
	Packs    Kind = "data"     // packs of sealed blobs
	Index    Kind = "index"    // sealed index objects
	Versions Kind = "versions" // sealed, signed versions
	Pending  Kind = "pending"  // prune's list of packs marked for deletion

	// Checkpoints are the audit ledger's signed checkpoints (public notes),
	// kept with the data so that a rewrite of history is caught by anyone
	// holding an older one.
	Checkpoints Kind = "checkpoints"
)

// Handle names one object.
type Handle struct {
	Kind Kind
	Name string // empty for the singletons Marker and Config
}

func (h Handle) String() string {
	if h.Name == "" {
		return string(h.Kind)
	}
	return string(h.Kind) + "/" + h.Name
}

// Info describes a stored object. ModTime is the store's clock, not the
// client's: retention decisions use it.
type Info struct {
	Handle  Handle
	Size    int64
	ModTime time.Time
}

// Errors callers branch on.
var (
	ErrNotFound = errors.New("object not found")
	ErrExists   = errors.New("object already exists")
	// ErrReadOnly: the backend is a view that cannot be written, such as
	// an S3 bucket as it was at a past time.
	ErrReadOnly = errors.New("read-only view")
)

// Backend is the object store a vault lives in. Objects are write-once:
// Put of an existing name returns ErrExists and leaves the object as it was.
// Put is atomic: a reader sees the whole object or nothing, also after a crash.
// All methods are safe for concurrent use. Every method checks ctx first and
// refuses a handle that fails Handle.Validate with ErrInvalidHandle; a missing
// object is an error wrapping ErrNotFound. The suite in backendtest holds
// each implementation to these rules.
type Backend interface {
	// Location is a human-readable place (a path or URL) for messages.
	Location() string
	Put(ctx context.Context, h Handle, data []byte) error
	Get(ctx context.Context, h Handle) ([]byte, error)
	// GetRange reads length bytes at offset; a short object is an error
	// wrapping io.ErrUnexpectedEOF.
	GetRange(ctx context.Context, h Handle, offset, length int64) ([]byte, error)
	Stat(ctx context.Context, h Handle) (Info, error)
	// List calls fn for every object of kind, in no particular order.
	List(ctx context.Context, kind Kind, fn func(Info) error) error
	Delete(ctx context.Context, h Handle) error
	Close() error
}

// FilePutter is implemented by backends that can turn a file the caller
// wrote into an object without the bytes passing through memory (the local
// backend links it into place). Writers of large objects (packs) use it
// when it is there, so their memory does not grow with the object size.
type FilePutter interface {
	// CreateTemp makes a new, empty temporary file in the backend's own
	// space, invisible to Get and List.
	CreateTemp() (*os.File, error)
	// PutFile makes the fully written temporary file f (from CreateTemp)
	// the object h, atomically and write-once like Put. f is closed and its
	// temporary name removed whether or not it succeeds.
	PutFile(ctx context.Context, h Handle, f *os.File) error
	// DiscardTemp closes and removes a temporary file that will not be put.
	DiscardTemp(f *os.File)
}

// Opener is implemented by backends whose objects are local files: a
// reader of a whole object (an offsite push) opens it once instead of per
// range.
type Opener interface {
	// Open returns the object's file, open for reading; the caller closes it.
	Open(ctx context.Context, h Handle) (*os.File, error)
}

// RangeReader is implemented by backends that can read part of an object
// into a buffer the caller owns, so hot read paths allocate nothing.
type RangeReader interface {
	// ReadRange fills dst with the bytes of h at offset; a short object is
	// an error, as for GetRange.
	ReadRange(ctx context.Context, h Handle, offset int64, dst []byte) error
}
