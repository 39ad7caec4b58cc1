package offsite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"

	"github.com/custodyhq/custody/internal/backend"
	"github.com/custodyhq/custody/internal/backend/s3"
	"github.com/custodyhq/custody/internal/catalog"
)

// pushOrder uploads what others refer to before what refers to it, so an
// offsite interrupted at any point never holds a version whose data it
// lacks: packs, then the index, keys and config, then versions, then the
// marker that makes the prefix a vault, then checkpoints and prune's lists.
var pushOrder = []backend.Kind{backend.Packs, backend.Index, backend.Keys, backend.Config, backend.Versions, backend.Marker, backend.Checkpoints, backend.Pending}

// PushOptions tune Push.
type PushOptions struct {
	Workers  int              // parallel uploads (default 8)
	Now      func() time.Time // the clock retention dates count from (default time.Now)
	Progress func(done, total int, bytes int64)
}

// PushStats say what a push did.
type PushStats struct {
	Local    int   `json:"local_objects"`      // objects in the vault
	Uploaded int   `json:"uploaded"`           // sent by this push
	Adopted  int   `json:"adopted"`            // found already there (an interrupted push, another host) and recorded
	Extended int   `json:"retention_extended"` // objects whose retention was moved later
	Bytes    int64 `json:"bytes_uploaded"`
}

// ErrNotVersioned and ErrNoObjectLock: the bucket cannot keep what a push
// writes safe.
var (
	ErrNotVersioned = errors.New("bucket versioning is not enabled")
	ErrNoObjectLock = errors.New("bucket has no Object Lock")
)

// Push copies every vault object the offsite does not hold yet, with the
// offsite's retention, and extends the retention of objects the vault
// still holds before it runs out. It needs no delete permission. Objects
// are recorded in the catalog as they land, so an interrupted push resumes
// without uploading again what landed, and a push with nothing new makes
// two requests (the bucket checks) whatever the vault's size. It refuses
// while the zero-trust gate is closed.
func Push(ctx context.Context, t *Target, local backend.Backend, db *catalog.DB, opts PushOptions) (PushStats, error) {
	var st PushStats
	if opts.Workers <= 0 {
		opts.Workers = 8
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := db.CheckGate(ctx, "offsite push"); err != nil {
		return st, err
	}
	if err := t.CheckBucket(ctx); err != nil {
		return st, err
	}
	known, err := t.records(ctx, db)
	if err != nil {
		return st, err
	}
	var todo [][]backend.Info // by pushOrder
	var live []catalog.OffsiteObject
	total := 0
	for _, kind := range pushOrder {
		var batch []backend.Info
		err := local.List(ctx, kind, func(fi backend.Info) error {
			st.Local++
			if o, ok := known[fi.Handle.String()]; ok {
				live = append(live, o)
			} else {
				batch = append(batch, fi)
			}
			return nil
		})
		if err != nil {
			return st, fmt.Errorf("offsite push: list the vault: %w", err)
		}
		todo = append(todo, batch)
		total += len(batch)
	}

	rec := newRecorder(db, t.Rec.Name)
	defer rec.close(ctx)
	ret := t.retention(opts.Now())
	var mu sync.Mutex
	done := 0
	for _, batch := range todo {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(opts.Workers)
		for _, fi := range batch {
			g.Go(func() error {
				o, adopted, err := t.upload(gctx, local, fi, ret, opts.Now)
				if err != nil {
					return err
				}
				if err := rec.add(gctx, o); err != nil {
					return err
				}
				mu.Lock()
				defer mu.Unlock()
				if adopted {
					st.Adopted++
				} else {
					st.Uploaded++
					st.Bytes += fi.Size
				}
				done++
				if opts.Progress != nil {
					opts.Progress(done, total, st.Bytes)
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return st, fmt.Errorf("offsite push to %s: %w", t.Rec.Name, err)
		}
		// What this kind refers to must be recorded before the next kind
		// is sent.
		if err := rec.flush(ctx); err != nil {
			return st, err
		}
	}
	n, err := t.extend(ctx, live, rec, opts)
	st.Extended = n
	if err != nil {
		return st, err
	}
	return st, rec.flush(ctx)
}

// records is what the catalog says the offsite holds, by handle string.
func (t *Target) records(ctx context.Context, db *catalog.DB) (map[string]catalog.OffsiteObject, error) {
	known := map[string]catalog.OffsiteObject{}
	err := db.OffsiteObjects(ctx, t.Rec.Name, func(o catalog.OffsiteObject) error { known[o.Key] = o; return nil })
	return known, err
}

// CheckBucket refuses a bucket that would not keep pushed objects safe:
// versioning must be on, and Object Lock when the offsite locks.
func (t *Target) CheckBucket(ctx context.Context) error {
	c, bucket := t.S3.Client(), t.S3.Bucket()
	v, err := c.GetBucketVersioning(ctx, &s3api.GetBucketVersioningInput{Bucket: &bucket})
	if err != nil {
		return fmt.Errorf("offsite %s: read the bucket's versioning: %w", t.Rec.Name, err)
	}
	if v.Status != types.BucketVersioningStatusEnabled {
		state := string(v.Status)
		if state == "" {
			state = "never enabled"
		}
		return fmt.Errorf("offsite %s: %w on %s (%s): an overwrite or delete there would destroy the only copy; enable it (aws s3api put-bucket-versioning --bucket %s --versioning-configuration Status=Enabled) and push again",
			t.Rec.Name, ErrNotVersioned, bucket, state, bucket)
	}
	if t.Rec.LockMode == "" {
		return nil
	}
	lc, err := c.GetObjectLockConfiguration(ctx, &s3api.GetObjectLockConfigurationInput{Bucket: &bucket})
	if err != nil || lc.ObjectLockConfiguration == nil || lc.ObjectLockConfiguration.ObjectLockEnabled != types.ObjectLockEnabledEnabled {
		why := "it is not enabled"
		if err != nil {
			why = err.Error()
		}
		return fmt.Errorf("offsite %s: %w on %s (%s), but the offsite is set to lock objects for %d days: Object Lock can only be enabled when a bucket is created; create one with it (aws s3api create-bucket --object-lock-enabled-for-bucket) and add that as the offsite",
			t.Rec.Name, ErrNoObjectLock, bucket, why, t.Rec.LockDays)
	}
	return nil
}

// retention is what an object written at now gets.
func (t *Target) retention(now time.Time) s3.Retention {
	if t.Rec.LockMode == "" {
		return s3.Retention{}
	}
	return s3.Retention{Mode: lockMode(t.Rec.LockMode), Until: now.Add(time.Duration(t.Rec.LockDays) * 24 * time.Hour).UTC().Truncate(time.Second)}
}

// upload sends one object. An object already under its key (an upload
// whose record was lost to a crash, or another host's push) is adopted
// when it is the same size: content-named objects with one name hold one
// content, and the audit checks the rest.
func (t *Target) upload(ctx context.Context, local backend.Backend, fi backend.Info, ret s3.Retention, now func() time.Time) (catalog.OffsiteObject, bool, error) {
	var r io.ReaderAt = &objectReader{ctx: ctx, be: local, h: fi.Handle}
	if op, ok := local.(backend.Opener); ok {
		f, err := op.Open(ctx, fi.Handle)
		if err != nil {
			return catalog.OffsiteObject{}, false, err
		}
		defer f.Close()
		r = f
	}
	w, err := t.S3.PutRetained(ctx, fi.Handle, r, fi.Size, ret)
	o := catalog.OffsiteObject{Key: fi.Handle.String(), Size: fi.Size, VersionID: w.VersionID, SHA256: w.SHA256, RetainUntil: ret.Until, PushedAt: now()}
	if err == nil {
		return o, false, nil
	}
	if !errors.Is(err, backend.ErrExists) {
		return o, false, err
	}
	bucket, key := t.S3.Bucket(), t.S3.Key(fi.Handle)
	head, herr := t.S3.Client().HeadObject(ctx, &s3api.HeadObjectInput{Bucket: &bucket, Key: &key, ChecksumMode: types.ChecksumModeEnabled})
	if herr != nil {
		return o, false, fmt.Errorf("%s is in the bucket but cannot be read: %w", fi.Handle, herr)
	}
	if aws.ToInt64(head.ContentLength) != fi.Size {
		return o, false, fmt.Errorf("%s is in the bucket with %d bytes, the vault's has %d: something else wrote that key; run `custody offsite audit %s`",
			fi.Handle, aws.ToInt64(head.ContentLength), fi.Size, t.Rec.Name)
	}
	o.VersionID, o.SHA256 = aws.ToString(head.VersionId), aws.ToString(head.ChecksumSHA256)
	o.RetainUntil = aws.ToTime(head.ObjectLockRetainUntilDate)
	o.LegalHold = head.ObjectLockLegalHoldStatus == types.ObjectLockLegalHoldStatusOn
	return o, true, nil
}

// extend moves the retention of objects the vault still holds to a full
// lock period from now once less than half of it is left: S3 refuses to
// shorten retention, and this never asks it to.
func (t *Target) extend(ctx context.Context, live []catalog.OffsiteObject, rec *recorder, opts PushOptions) (int, error) {
	if t.Rec.LockMode == "" {
		return 0, nil
	}
	now := opts.Now()
	period := time.Duration(t.Rec.LockDays) * 24 * time.Hour
	ret := t.retention(now)
	var due []catalog.OffsiteObject
	for _, o := range live {
		if o.RetainUntil.Before(now.Add(period/2)) && o.RetainUntil.Before(ret.Until) {
			due = append(due, o)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Workers)
	bucket := t.S3.Bucket()
	for _, o := range due {
		g.Go(func() error {
			h, err := backend.ParseHandle(o.Key)
			if err != nil {
				return fmt.Errorf("catalog record %q: %w", o.Key, err)
			}
			key := t.S3.Key(h)
			in := &s3api.PutObjectRetentionInput{Bucket: &bucket, Key: &key, Retention: &types.ObjectLockRetention{Mode: types.ObjectLockRetentionMode(t.Rec.LockMode), RetainUntilDate: aws.Time(ret.Until)}}
			if o.VersionID != "" {
				in.VersionId = aws.String(o.VersionID)
			}
			if _, err := t.S3.Client().PutObjectRetention(gctx, in); err != nil {
				return fmt.Errorf("extend the retention of %s: %w", o.Key, err)
			}
			o.RetainUntil = ret.Until
			return rec.add(gctx, o)
		})
	}
	if err := g.Wait(); err != nil {
		return 0, fmt.Errorf("offsite push to %s: %w", t.Rec.Name, err)
	}
	return len(due), nil
}

// objectReader reads a vault object by ranges, so large packs stream from
// the local vault instead of sitting in memory.
type objectReader struct {
	ctx context.Context
	be  backend.Backend
	h   backend.Handle
}

func (r *objectReader) ReadAt(p []byte, off int64) (int, error) {
	if rr, ok := r.be.(backend.RangeReader); ok {
		if err := rr.ReadRange(r.ctx, r.h, off, p); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	b, err := r.be.GetRange(r.ctx, r.h, off, int64(len(p)))
	if err != nil {
		return 0, err
	}
	return copy(p, b), nil
}

var _ io.ReaderAt = (*objectReader)(nil)

// recorder writes landed objects to the catalog in batches: at most a
// second's or 256 objects' worth is lost to a crash, and those are
// adopted, not uploaded again, by the next push.
type recorder struct {
	db      *catalog.DB
	offsite string
	mu      sync.Mutex
	pending []catalog.OffsiteObject
	last    time.Time
}

func newRecorder(db *catalog.DB, offsite string) *recorder {
	return &recorder{db: db, offsite: offsite, last: time.Now()}
}

func (r *recorder) add(ctx context.Context, o catalog.OffsiteObject) error {
	r.mu.Lock()
	r.pending = append(r.pending, o)
	due := len(r.pending) >= 256 || time.Since(r.last) >= time.Second
	r.mu.Unlock()
	if due {
		return r.flush(ctx)
	}
	return nil
}

func (r *recorder) flush(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pending) == 0 {
		return nil
	}
	if err := r.db.PutOffsiteObjects(ctx, r.offsite, r.pending); err != nil {
		return err
	}
	r.pending, r.last = r.pending[:0], time.Now()
	return nil
}

// close records what is pending even when the push failed or was
// interrupted: those objects did land.
func (r *recorder) close(ctx context.Context) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	_ = r.flush(cctx)
}
