package s3

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/custodyhq/custody/internal/backend"
)

// What offsite copies need beyond the Backend interface: the client for
// bucket-level calls (versioning, Object Lock, listing versions), the
// mapping between handles and keys, and uploads that carry retention.

// Client is the SDK client, for S3 features beyond backend.Backend.
func (b *S3) Client() *s3api.Client { return b.client }

// Bucket is the bucket's name.
func (b *S3) Bucket() string { return b.bucket }

// Prefix is the folder the vault lives in: "" or ending in "/".
func (b *S3) Prefix() string { return b.prefix }

// Key is the object key of h, which must be valid.
func (b *S3) Key(h backend.Handle) string { return b.key(h) }

// HandleOfKey is the inverse of Key: the vault object stored at key, or
// false for a key that is not one (another tool's file, a folder marker).
func (b *S3) HandleOfKey(key string) (backend.Handle, bool) {
	rel, ok := strings.CutPrefix(key, b.prefix)
	if !ok {
		return backend.Handle{}, false
	}
	switch rel {
	case "custody-vault":
		return backend.Handle{Kind: backend.Marker}, true
	case "config":
		return backend.Handle{Kind: backend.Config}, true
	}
	kind, name, ok := strings.Cut(rel, "/")
	if !ok || backend.ValidateKind(backend.Kind(kind)) != nil || backend.Kind(kind).Singleton() {
		return backend.Handle{}, false
	}
	return handleOf(backend.Kind(kind), name)
}

// Retention is the Object Lock protection an upload carries.
type Retention struct {
	Mode      types.ObjectLockMode // "" for none, else GOVERNANCE or COMPLIANCE
	Until     time.Time
	LegalHold bool
}

// Written describes an object as the server stored it.
type Written struct {
	VersionID string // "" when the bucket is not versioned
	SHA256    string // base64; for multipart uploads the checksum of the part checksums, "-N" suffixed
	Size      int64
}

// PutRetained stores size bytes of r as h, write-once like Put, with
// retention, and returns the version written. r is read with ReadAt only.
func (b *S3) PutRetained(ctx context.Context, h backend.Handle, r io.ReaderAt, size int64, ret Retention) (Written, error) {
	if err := begin(ctx, h); err != nil {
		return Written{}, fmt.Errorf("put %s: %w", h, err)
	}
	if ret.Mode != "" && !ret.Until.After(time.Now()) {
		return Written{}, fmt.Errorf("put %s: retention until %s is not in the future", h, ret.Until.Format(time.RFC3339))
	}
	return b.upload(ctx, h, r, size, ret)
}

// IsNotFound reports whether err is S3's answer for a missing key,
// version or bucket.
func IsNotFound(err error) bool { return isNotFound(err) }

// APICode is the S3 error code of err ("AccessDenied", ...), or "".
func APICode(err error) string { return apiCode(err) }
