package s3

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/custodyhq/custody/internal/backend"
	"github.com/custodyhq/custody/internal/backend/s3test"
	"github.com/custodyhq/custody/internal/testkit"
)

func TestPutRetainedStoresTheRetentionAsked(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "", s3test.BucketOptions{ObjectLock: true})
	b := open(t, srv, bucket, "offsite")
	b.partSize = 5 << 20 // the smallest part S3 allows
	c := srv.Client(t)
	ctx := context.Background()
	until := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	tests := []struct {
		name string
		h    backend.Handle
		size int
		ret  Retention
	}{
		{"governance", backend.Handle{Kind: backend.Index, Name: "i1"}, 100,
			Retention{Mode: types.ObjectLockModeGovernance, Until: until}},
		{"compliance", backend.Handle{Kind: backend.Versions, Name: "v1"}, 100,
			Retention{Mode: types.ObjectLockModeCompliance, Until: until}},
		{"legal hold alone", backend.Handle{Kind: backend.Keys, Name: "k1"}, 10,
			Retention{LegalHold: true}},
		{"retention and legal hold", backend.Handle{Kind: backend.Config}, 10,
			Retention{Mode: types.ObjectLockModeGovernance, Until: until, LegalHold: true}},
		{"multipart", backend.Handle{Kind: backend.Packs, Name: "ab01"}, 11 << 20,
			Retention{Mode: types.ObjectLockModeGovernance, Until: until, LegalHold: true}},
	}
	for i, tt := range tests {
		data := testkit.RandomBytes(uint64(i), tt.size)
		w, err := b.PutRetained(ctx, tt.h, bytes.NewReader(data), int64(len(data)), tt.ret)
		if err != nil {
			t.Errorf("%s: PutRetained: %v", tt.name, err)
			continue
		}
		key := aws.String(b.Key(tt.h))
		head, err := c.HeadObject(ctx, &s3api.HeadObjectInput{Bucket: &bucket, Key: key})
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if w.VersionID == "" || w.VersionID != aws.ToString(head.VersionId) || w.Size != int64(len(data)) {
			t.Errorf("%s: PutRetained wrote %+v; the server has version %q, %d bytes", tt.name, w, aws.ToString(head.VersionId), aws.ToInt64(head.ContentLength))
		}
		if multipart := strings.HasSuffix(w.SHA256, "-3"); multipart != (tt.size > int(b.partSize)) {
			t.Errorf("%s: checksum %q; want a composite of 3 parts only for an object larger than a part", tt.name, w.SHA256)
		}

		ret, err := c.GetObjectRetention(ctx, &s3api.GetObjectRetentionInput{Bucket: &bucket, Key: key, VersionId: head.VersionId})
		switch {
		case tt.ret.Mode == "" && err == nil && ret.Retention != nil && ret.Retention.Mode != "":
			t.Errorf("%s: retention %+v, want none", tt.name, *ret.Retention)
		case tt.ret.Mode == "":
		case err != nil:
			t.Errorf("%s: GetObjectRetention: %v", tt.name, err)
		case ret.Retention.Mode != types.ObjectLockRetentionMode(tt.ret.Mode) || !aws.ToTime(ret.Retention.RetainUntilDate).Equal(until):
			t.Errorf("%s: retention %s until %v, want %s until %v", tt.name,
				ret.Retention.Mode, aws.ToTime(ret.Retention.RetainUntilDate), tt.ret.Mode, until)
		}
		hold, err := c.GetObjectLegalHold(ctx, &s3api.GetObjectLegalHoldInput{Bucket: &bucket, Key: key, VersionId: head.VersionId})
		on := err == nil && hold.LegalHold != nil && hold.LegalHold.Status == types.ObjectLockLegalHoldStatusOn
		if on != tt.ret.LegalHold {
			t.Errorf("%s: legal hold on = %v (%v), want %v", tt.name, on, err, tt.ret.LegalHold)
		}

		if got, err := b.Get(ctx, tt.h); err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: Get = %d bytes, %v; want the %d bytes put", tt.name, len(got), err, len(data))
		}
		_, err = b.PutRetained(ctx, tt.h, bytes.NewReader(data), int64(len(data)), tt.ret)
		if !errors.Is(err, backend.ErrExists) {
			t.Errorf("%s: second PutRetained: err = %v, want ErrExists", tt.name, err)
		}
	}
}

func TestPutRetainedRefusesRetentionInThePast(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "", s3test.BucketOptions{ObjectLock: true})
	b := open(t, srv, bucket, "")
	ctx := context.Background()
	h := backend.Handle{Kind: backend.Index, Name: "i1"}
	for _, until := range []time.Time{time.Now().Add(-time.Minute), time.Now(), {}} {
		ret := Retention{Mode: types.ObjectLockModeCompliance, Until: until}
		_, err := b.PutRetained(ctx, h, strings.NewReader("index"), 5, ret)
		if err == nil || !strings.Contains(err.Error(), "not in the future") {
			t.Errorf("PutRetained until %v: err = %v, want it refused as not in the future", until, err)
		}
	}
	if _, err := b.Stat(ctx, h); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("after refused PutRetained, Stat: err = %v, want ErrNotFound", err)
	}
}

func TestHandleOfKeyInvertsKey(t *testing.T) {
	for _, prefix := range []string{"", "team/vault/"} {
		b := &S3{bucket: "vault", prefix: prefix}
		for _, kind := range backend.Kinds() {
			names := []string{"ab", "ab01", ".a.", "-dash", "A_Z.a-z.0_9", strings.Repeat("f", backend.MaxNameLen)}
			if kind.Singleton() {
				names = []string{""}
			}
			for _, name := range names {
				h := backend.Handle{Kind: kind, Name: name}
				if got, ok := b.HandleOfKey(b.Key(h)); !ok || got != h {
					t.Errorf("prefix %q: HandleOfKey(%q) = %v, %v; want %v", prefix, b.Key(h), got, ok, h)
				}
			}
		}
		foreign := []string{
			"", "/", "custody-vault/x", "custody-vault.bak", "config/", "config/x", "marker", "marker/x",
			"tmp/x", "index", "index/", "index/a/b", "index/..", "index/a b", "Index/x", "nope/x",
			"data/ab", "data/ab/", "data/ab01", "data/ab/cd01", "data/a/ab", "data/ab/ab/ab01",
		}
		for _, rel := range foreign {
			if h, ok := b.HandleOfKey(prefix + rel); ok {
				t.Errorf("prefix %q: HandleOfKey(%q) = %v, want no handle", prefix, prefix+rel, h)
			}
		}
		if prefix != "" {
			for _, key := range []string{"custody-vault", "config", "index/i1", "team/vault", "team/vaultindex/i1", "other/index/i1", "team/index/i1"} {
				if h, ok := b.HandleOfKey(key); ok {
					t.Errorf("prefix %q: HandleOfKey(%q) outside the prefix = %v, want no handle", prefix, key, h)
				}
			}
		}
	}
}
