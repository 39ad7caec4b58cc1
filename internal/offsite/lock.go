package offsite

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"

	"github.com/custodyhq/custody/internal/backend"
	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/snapshot"
	"github.com/custodyhq/custody/internal/vault"
)

// LockRequest says how to protect a version's objects.
type LockRequest struct {
	Mode      string    // GOVERNANCE or COMPLIANCE; "" with LegalHold alone
	Until     time.Time // with Mode
	LegalHold bool
}

// VersionObjects lists every vault object restoring ver needs: the version
// itself, the packs holding its trees and contents, every index object
// (they are small and name the packs), the keys, the config and the
// marker.
func VersionObjects(ctx context.Context, v *vault.Vault, ver *vault.Version) ([]backend.Handle, error) {
	packs := map[vault.ID]bool{}
	err := snapshot.WalkBlobs(ctx, v, ver.Tree, map[vault.ID]bool{}, func(id vault.ID) error {
		p, err := v.PackOf(id)
		packs[p] = true
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("version %s: %w", ver.ID.Short(), err)
	}
	hs := []backend.Handle{{Kind: backend.Marker}, {Kind: backend.Config}, {Kind: backend.Versions, Name: ver.ID.String()}}
	for p := range packs {
		hs = append(hs, backend.Handle{Kind: backend.Packs, Name: p.String()})
	}
	for _, kind := range []backend.Kind{backend.Keys, backend.Index} {
		err := v.Backend().List(ctx, kind, func(fi backend.Info) error { hs = append(hs, fi.Handle); return nil })
		if err != nil {
			return nil, err
		}
	}
	return hs, nil
}

// Lock puts retention (never shortening what an object has) or a legal
// hold on every offsite object ver needs. Every one must have been pushed.
// It returns how many objects it protected.
func Lock(ctx context.Context, t *Target, v *vault.Vault, db *catalog.DB, ver *vault.Version, req LockRequest) (int, error) {
	if req.Mode == "" && !req.LegalHold {
		return 0, fmt.Errorf("lock: give a retention (--days or --until) or --legal-hold")
	}
	if req.Mode != "" && !req.Until.After(time.Now()) {
		return 0, fmt.Errorf("lock: %s is not in the future", req.Until.Format(time.RFC3339))
	}
	if err := t.CheckBucket(ctx); err != nil {
		return 0, err
	}
	bucket := t.S3.Bucket()
	lc, err := t.S3.Client().GetObjectLockConfiguration(ctx, &s3api.GetObjectLockConfigurationInput{Bucket: &bucket})
	if err != nil || lc.ObjectLockConfiguration == nil || lc.ObjectLockConfiguration.ObjectLockEnabled != types.ObjectLockEnabledEnabled {
		return 0, fmt.Errorf("lock: offsite %s: %w on %s: create the bucket with Object Lock enabled", t.Rec.Name, ErrNoObjectLock, bucket)
	}
	hs, err := VersionObjects(ctx, v, ver)
	if err != nil {
		return 0, fmt.Errorf("lock: %w", err)
	}
	known, err := t.records(ctx, db)
	if err != nil {
		return 0, err
	}
	var missing int
	for _, h := range hs {
		if _, ok := known[h.String()]; !ok {
			missing++
		}
	}
	if missing > 0 {
		return 0, fmt.Errorf("lock: %d of the %d objects version %s needs are not on offsite %s yet: run `custody offsite push %s` first",
			missing, len(hs), ver.ID.Short(), t.Rec.Name, t.Rec.Name)
	}
	rec := newRecorder(db, t.Rec.Name)
	defer rec.close(ctx)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	c := t.S3.Client()
	for _, h := range hs {
		o := known[h.String()]
		g.Go(func() error {
			key := t.S3.Key(h)
			var vid *string
			if o.VersionID != "" {
				vid = aws.String(o.VersionID)
			}
			if req.Mode != "" && o.RetainUntil.Before(req.Until) {
				_, err := c.PutObjectRetention(gctx, &s3api.PutObjectRetentionInput{Bucket: &bucket, Key: &key, VersionId: vid,
					Retention: &types.ObjectLockRetention{Mode: types.ObjectLockRetentionMode(req.Mode), RetainUntilDate: aws.Time(req.Until)}})
				if err != nil {
					return fmt.Errorf("retain %s: %w", h, err)
				}
				o.RetainUntil = req.Until
			}
			if req.LegalHold && !o.LegalHold {
				_, err := c.PutObjectLegalHold(gctx, &s3api.PutObjectLegalHoldInput{Bucket: &bucket, Key: &key, VersionId: vid,
					LegalHold: &types.ObjectLockLegalHold{Status: types.ObjectLockLegalHoldStatusOn}})
				if err != nil {
					return fmt.Errorf("legal hold on %s: %w", h, err)
				}
				o.LegalHold = true
			}
			return rec.add(gctx, o)
		})
	}
	if err := g.Wait(); err != nil {
		return 0, fmt.Errorf("lock version %s on %s: %w", ver.ID.Short(), t.Rec.Name, err)
	}
	return len(hs), rec.flush(ctx)
}
