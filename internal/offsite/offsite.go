// Package offsite keeps copies of a vault in S3 buckets with versioning
// and Object Lock: incremental pushes that need no delete permission,
// retention on every object (extended, never shortened, while live
// versions need it), locks on chosen versions, and audits of the bucket
// against what was pushed.
package offsite

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/custodyhq/custody/internal/backend/s3"
	"github.com/custodyhq/custody/internal/catalog"
)

// Target is an offsite opened for use.
type Target struct {
	Rec catalog.Offsite
	S3  *s3.S3
}

// Open connects to the offsite's bucket. Credentials are keys, or when
// keys is zero the AWS environment's (AWS_ACCESS_KEY_ID, AWS_PROFILE, ...),
// never the catalog's.
func Open(ctx context.Context, rec catalog.Offsite, keys s3.Keys) (*Target, error) {
	cfg, err := s3.ParseURL(rec.URL)
	if err != nil {
		return nil, err
	}
	cfg.Endpoint, cfg.Region, cfg.InsecureSkipVerify = rec.Endpoint, rec.Region, rec.InsecureTLS
	b, err := s3.New(ctx, cfg.WithKeys(keys))
	if err != nil {
		return nil, fmt.Errorf("offsite %s: %w", rec.Name, err)
	}
	return &Target{Rec: rec, S3: b}, nil
}

// Add makes rec an offsite of the catalog: it checks the bucket is safe
// to push to (versioning, and Object Lock when rec locks), keeps the
// bucket's configuration as the baseline later audits compare with, and
// records rec with it. It returns rec as recorded.
func Add(ctx context.Context, db *catalog.DB, rec catalog.Offsite, keys s3.Keys) (catalog.Offsite, error) {
	t, err := Open(ctx, rec, keys)
	if err != nil {
		return rec, err
	}
	if err := t.CheckBucket(ctx); err != nil {
		return rec, err
	}
	base, err := TakeBaseline(ctx, t)
	if err != nil {
		return rec, err
	}
	rec.Baseline = base.Encode()
	return rec, db.AddOffsite(ctx, rec)
}

// ParseLockMode reads a --lock-mode value: "" (none), governance or
// compliance, in any case.
func ParseLockMode(s string) (string, error) {
	switch m := strings.ToUpper(s); m {
	case "", "GOVERNANCE", "COMPLIANCE":
		return m, nil
	}
	return "", fmt.Errorf("lock mode %q: use governance (admins with the bypass permission may shorten it) or compliance (no one can)", s)
}

// lockMode is the SDK's form of a catalog lock mode.
func lockMode(m string) types.ObjectLockMode { return types.ObjectLockMode(m) }
