package offsite

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/custodyhq/custody/internal/backend"
	"github.com/custodyhq/custody/internal/backend/mem"
	"github.com/custodyhq/custody/internal/backend/s3"
	"github.com/custodyhq/custody/internal/backend/s3test"
	"github.com/custodyhq/custody/internal/catalog"
)

// pushFixture is a local vault's objects (in memory), an offsite with a
// one-day governance lock, and its catalog.
func pushFixture(t *testing.T) (*Target, backend.Backend, *catalog.DB, *s3api.Client) {
	t.Helper()
	ctx := context.Background()
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "", s3test.BucketOptions{Versioning: true, ObjectLock: true})
	b, err := s3.New(ctx, s3.Config{Bucket: bucket, Prefix: "v", Endpoint: srv.Endpoint, Region: s3test.Region, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	db, err := catalog.Open(ctx, filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	rec := catalog.Offsite{Name: "dr", URL: "s3://" + bucket + "/v", Endpoint: srv.Endpoint, Region: s3test.Region, LockMode: "GOVERNANCE", LockDays: 1, Created: time.Now()}
	if err := db.AddOffsite(ctx, rec); err != nil {
		t.Fatal(err)
	}
	local := mem.New()
	for _, h := range []backend.Handle{{Kind: backend.Marker}, {Kind: backend.Config}, {Kind: backend.Keys, Name: "k1"}, {Kind: backend.Packs, Name: "aa11"}, {Kind: backend.Packs, Name: "bb22"}, {Kind: backend.Index, Name: "i1"}, {Kind: backend.Versions, Name: "v1"}} {
		if err := local.Put(ctx, h, []byte("content of "+h.String())); err != nil {
			t.Fatal(err)
		}
	}
	return &Target{Rec: rec, S3: b}, local, db, srv.Client(t)
}

func TestPushExtendsRetentionBeforeItRunsOutAndNeverShortensIt(t *testing.T) {
	ctx := context.Background()
	target, local, db, raw := pushFixture(t)
	t0 := time.Now()
	st, err := Push(ctx, target, local, db, PushOptions{Now: func() time.Time { return t0 }})
	if err != nil || st.Uploaded != 7 || st.Extended != 0 {
		t.Fatalf("first push: %+v %v", st, err)
	}
	// Four hours on, more than half the day is left: nothing to extend.
	st, err = Push(ctx, target, local, db, PushOptions{Now: func() time.Time { return t0.Add(4 * time.Hour) }})
	if err != nil || st.Uploaded != 0 || st.Extended != 0 {
		t.Fatalf("push after 4 h: %+v %v", st, err)
	}
	// Sixteen hours on, less than half is left: every object the vault
	// still holds gets a full day again; one it no longer holds does not.
	if err := local.Delete(ctx, backend.Handle{Kind: backend.Packs, Name: "bb22"}); err != nil {
		t.Fatal(err)
	}
	later := t0.Add(16 * time.Hour)
	st, err = Push(ctx, target, local, db, PushOptions{Now: func() time.Time { return later }})
	if err != nil || st.Extended != 6 {
		t.Fatalf("push after 16 h: %+v %v", st, err)
	}
	bucket := target.S3.Bucket()
	until := func(h backend.Handle) time.Time {
		r, err := raw.GetObjectRetention(ctx, &s3api.GetObjectRetentionInput{Bucket: &bucket, Key: aws.String(target.S3.Key(h))})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToTime(r.Retention.RetainUntilDate)
	}
	if got := until(backend.Handle{Kind: backend.Packs, Name: "aa11"}); got.Before(later.Add(23 * time.Hour)) {
		t.Fatalf("live pack retained until %v, want a day after %v", got, later)
	}
	if got := until(backend.Handle{Kind: backend.Packs, Name: "bb22"}); got.After(t0.Add(25 * time.Hour)) {
		t.Fatalf("forgotten pack's retention was extended to %v", got)
	}
}

func TestPushAdoptsObjectsThatLandedUnrecorded(t *testing.T) {
	ctx := context.Background()
	target, local, db, _ := pushFixture(t)
	// A push that died after uploading, before recording: the objects are
	// in the bucket, the catalog knows nothing.
	h := backend.Handle{Kind: backend.Packs, Name: "aa11"}
	data, _ := local.Get(ctx, h)
	if _, err := target.S3.PutRetained(ctx, h, bytesReader(data), int64(len(data)), target.retention(time.Now())); err != nil {
		t.Fatal(err)
	}
	st, err := Push(ctx, target, local, db, PushOptions{})
	if err != nil || st.Adopted != 1 || st.Uploaded != 6 {
		t.Fatalf("push: %+v %v", st, err)
	}
	// A different object under a vault key is not adopted.
	h2 := backend.Handle{Kind: backend.Packs, Name: "cc33"}
	if err := local.Put(ctx, h2, []byte("the vault's bytes")); err != nil {
		t.Fatal(err)
	}
	if _, err := target.S3.PutRetained(ctx, h2, bytesReader([]byte("x")), 1, target.retention(time.Now())); err != nil {
		t.Fatal(err)
	}
	if _, err := Push(ctx, target, local, db, PushOptions{}); err == nil {
		t.Fatal("a foreign object under a vault key was adopted")
	}
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

func TestAPushWithNothingNewMakesTheSameFewRequestsWhateverTheVaultsSize(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t)
	proxy := newFakingProxy(t, srv)
	var requests atomic.Int64
	proxy.answer(func(http.ResponseWriter, *http.Request) bool { requests.Add(1); return false })
	bucket := srv.Bucket(t, "", s3test.BucketOptions{Versioning: true, ObjectLock: true})
	b, err := s3.New(ctx, s3.Config{Bucket: bucket, Endpoint: proxy.URL, Region: s3test.Region, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	db, err := catalog.Open(ctx, filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	rec := catalog.Offsite{Name: "dr", URL: "s3://" + bucket, Endpoint: proxy.URL, Region: s3test.Region, LockMode: "COMPLIANCE", LockDays: 1, Created: time.Now()}
	if err := db.AddOffsite(ctx, rec); err != nil {
		t.Fatal(err)
	}
	target, local := &Target{Rec: rec, S3: b}, mem.New()
	noop := func(objects int) int64 {
		t.Helper()
		for i := range objects {
			h := backend.Handle{Kind: backend.Index, Name: fmt.Sprintf("%04x%08x", objects, i)}
			if err := local.Put(ctx, h, []byte(h.Name)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := Push(ctx, target, local, db, PushOptions{}); err != nil {
			t.Fatal(err)
		}
		requests.Store(0)
		st, err := Push(ctx, target, local, db, PushOptions{})
		if err != nil || st.Uploaded != 0 {
			t.Fatalf("push with nothing new: %+v %v", st, err)
		}
		return requests.Load()
	}
	small, large := noop(5), noop(300)
	if small != large || small > 2 {
		t.Fatalf("a push with nothing new made %d requests for 5 objects and %d for 305; want the same, at most 2", small, large)
	}
}
