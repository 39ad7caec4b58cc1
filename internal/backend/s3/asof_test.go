package s3

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
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

// waitPastSecond sleeps until the second after t0's has begun, so that
// what is written from then on has a LastModified after t0 even at the
// one-second resolution S3 reports.
func waitPastSecond(t0 time.Time) {
	time.Sleep(time.Until(t0.Truncate(time.Second).Add(time.Second + 20*time.Millisecond)))
}

// checkView wants view to hold exactly the objects of want, with their bytes.
func checkView(t *testing.T, view *AsOf, want map[backend.Handle][]byte) {
	t.Helper()
	ctx := context.Background()
	for h, data := range want {
		if got, err := view.Get(ctx, h); err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: Get(%s) = %.20q, %v; want %.20q", view.Location(), h, got, err, data)
		}
		if len(data) < 2 {
			if info, err := view.Stat(ctx, h); err != nil || info.Size != int64(len(data)) {
				t.Errorf("%s: Stat(%s) = %+v, %v; want size %d", view.Location(), h, info, err, len(data))
			}
			continue
		}
		if got, err := view.GetRange(ctx, h, 1, int64(len(data)-2)); err != nil || !bytes.Equal(got, data[1:len(data)-1]) {
			t.Errorf("%s: GetRange(%s) = %.20q, %v; want %.20q", view.Location(), h, got, err, data[1:len(data)-1])
		}
		dst := make([]byte, len(data)-1)
		if err := view.ReadRange(ctx, h, 1, dst); err != nil || !bytes.Equal(dst, data[1:]) {
			t.Errorf("%s: ReadRange(%s) = %.20q, %v; want %.20q", view.Location(), h, dst, err, data[1:])
		}
		if info, err := view.Stat(ctx, h); err != nil || info.Size != int64(len(data)) || info.Handle != h {
			t.Errorf("%s: Stat(%s) = %+v, %v; want size %d", view.Location(), h, info, err, len(data))
		}
	}
	for _, kind := range backend.Kinds() {
		got := listView(t, view, kind)
		n := 0
		for h, data := range want {
			if h.Kind != kind {
				continue
			}
			n++
			if size, ok := got[h.Name]; !ok || size != int64(len(data)) {
				t.Errorf("%s: List(%s) has %q of size %d (listed %v), want size %d", view.Location(), kind, h.Name, size, ok, len(data))
			}
		}
		if len(got) != n {
			t.Errorf("%s: List(%s) = %v, want %d objects", view.Location(), kind, got, n)
		}
	}
}

// listView returns name -> size for every object of kind in view.
func listView(t *testing.T, view *AsOf, kind backend.Kind) map[string]int64 {
	t.Helper()
	got := map[string]int64{}
	err := view.List(context.Background(), kind, func(info backend.Info) error {
		if _, dup := got[info.Handle.Name]; dup || info.Handle.Kind != kind || info.ModTime.IsZero() {
			t.Errorf("List(%s) reported %+v (twice: %v)", kind, info, dup)
		}
		got[info.Handle.Name] = info.Size
		return nil
	})
	if err != nil {
		t.Fatalf("List(%s): %v", kind, err)
	}
	return got
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: err = %v, want %v", what, err, target)
	}
}

func TestAsOfShowsTheVaultBeforeLaterOverwritesAndDeletes(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "", s3test.BucketOptions{Versioning: true})
	b := open(t, srv, bucket, "team/vault")
	c := srv.Client(t)
	ctx := context.Background()
	kept := backend.Handle{Kind: backend.Index, Name: "i1"}
	overwritten := backend.Handle{Kind: backend.Keys, Name: "k1"}
	deleted := backend.Handle{Kind: backend.Packs, Name: "ab01"}
	added := backend.Handle{Kind: backend.Index, Name: "i2"}
	marker := backend.Handle{Kind: backend.Marker}
	before := map[backend.Handle][]byte{
		kept:        []byte("a sealed index"),
		overwritten: []byte("the real master key"),
		deleted:     testkit.RandomBytes(1, 3000),
		marker:      []byte("custody-vault 1"),
	}
	for h, data := range before {
		if err := b.Put(ctx, h, data); err != nil {
			t.Fatal(err)
		}
	}
	t1 := time.Now()
	waitPastSecond(t1)

	// Someone with the bucket's credentials overwrites one object and
	// deletes another behind the backend's back; then the vault goes on.
	_, err := c.PutObject(ctx, &s3api.PutObjectInput{
		Bucket: &bucket, Key: aws.String(b.Key(overwritten)), Body: strings.NewReader("the attacker's key"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteObject(ctx, &s3api.DeleteObjectInput{Bucket: &bucket, Key: aws.String(b.Key(deleted))}); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, added, []byte("a later index")); err != nil {
		t.Fatal(err)
	}
	srv.FixVersionTimes(t, bucket)
	then, err := b.AsOf(ctx, t1)
	if err != nil {
		t.Fatal(err)
	}
	if want := "s3://" + bucket + "/team/vault as of " + t1.UTC().Format(time.RFC3339) + " at " + srv.Endpoint; then.Location() != want {
		t.Errorf("Location() = %q, want %q", then.Location(), want)
	}
	checkView(t, then, before)
	_, err = then.Stat(ctx, added)
	wantErr(t, "Stat of an object written after the instant", err, backend.ErrNotFound)

	now, err := b.AsOf(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	checkView(t, now, map[backend.Handle][]byte{
		kept:        before[kept],
		overwritten: []byte("the attacker's key"),
		added:       []byte("a later index"),
		marker:      before[marker],
	})
	_, err = now.Get(ctx, deleted)
	wantErr(t, "Get of a deleted object now", err, backend.ErrNotFound)
}

func TestAsOfMissesVersionsDeletedForGood(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "", s3test.BucketOptions{Versioning: true})
	b := open(t, srv, bucket, "")
	c := srv.Client(t)
	ctx := context.Background()
	only := backend.Handle{Kind: backend.Index, Name: "i1"}
	twice := backend.Handle{Kind: backend.Keys, Name: "k1"}
	for h, data := range map[backend.Handle]string{only: "index", twice: "the real key"} {
		if err := b.Put(ctx, h, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	over, err := c.PutObject(ctx, &s3api.PutObjectInput{
		Bucket: &bucket, Key: aws.String(b.Key(twice)), Body: strings.NewReader("the attacker's key"),
	})
	if err != nil {
		t.Fatal(err)
	}
	head, err := c.HeadObject(ctx, &s3api.HeadObjectInput{Bucket: &bucket, Key: aws.String(b.Key(only))})
	if err != nil {
		t.Fatal(err)
	}
	view, err := b.AsOf(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for key, version := range map[string]*string{b.Key(only): head.VersionId, b.Key(twice): over.VersionId} {
		if _, err := c.DeleteObject(ctx, &s3api.DeleteObjectInput{Bucket: &bucket, Key: &key, VersionId: version}); err != nil {
			t.Fatal(err)
		}
	}

	// The view built before reads versions that are gone.
	_, err = view.Get(ctx, only)
	wantErr(t, "Get of a version deleted after the view was built", err, backend.ErrNotFound)
	_, err = view.GetRange(ctx, only, 0, 1)
	wantErr(t, "GetRange of a version deleted after the view was built", err, backend.ErrNotFound)
	_, err = view.Stat(ctx, twice)
	wantErr(t, "Stat of a version deleted after the view was built", err, backend.ErrNotFound)

	// A new view shows the newest version left.
	fresh, err := b.AsOf(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	checkView(t, fresh, map[backend.Handle][]byte{twice: []byte("the real key")})
}

func TestAsOfRefusesWrites(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "", s3test.BucketOptions{Versioning: true})
	b := open(t, srv, bucket, "")
	ctx := context.Background()
	h := backend.Handle{Kind: backend.Index, Name: "i1"}
	if err := b.Put(ctx, h, []byte("index")); err != nil {
		t.Fatal(err)
	}
	view, err := b.AsOf(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := backend.Backend(view).(backend.FilePutter); ok {
		t.Error("the view is a backend.FilePutter; it must not take files")
	}
	for _, target := range []error{ErrReadOnly, backend.ErrReadOnly} {
		wantErr(t, "Put of a new object", view.Put(ctx, backend.Handle{Kind: backend.Index, Name: "i2"}, []byte("x")), target)
		wantErr(t, "Put over an object", view.Put(ctx, h, []byte("x")), target)
		wantErr(t, "Delete", view.Delete(ctx, h), target)
	}
	if err := view.Delete(ctx, h); err == nil || !strings.Contains(err.Error(), "point-in-time view is read-only") {
		t.Errorf("Delete: err = %v, want it to say the view is read-only", err)
	}
	if got, err := b.Get(ctx, h); err != nil || string(got) != "index" {
		t.Errorf("after refused writes, Get = %q, %v; want the object untouched", got, err)
	}
	if got := listView(t, view, backend.Index); len(got) != 1 {
		t.Errorf("after refused writes, List = %v; want i1 alone", got)
	}
}

func TestAsOfNeedsAVersionedBucket(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()
	b := open(t, srv, srv.Bucket(t, "", s3test.BucketOptions{}), "")
	if _, err := b.AsOf(ctx, time.Now()); err == nil || !strings.Contains(err.Error(), "point-in-time restore needs versioning") {
		t.Errorf("AsOf on an unversioned bucket: err = %v, want one saying it needs versioning", err)
	}

	// A bucket whose versioning was suspended keeps what it held before.
	bucket := srv.Bucket(t, "", s3test.BucketOptions{Versioning: true})
	b = open(t, srv, bucket, "")
	h := backend.Handle{Kind: backend.Config}
	if err := b.Put(ctx, h, []byte("config")); err != nil {
		t.Fatal(err)
	}
	_, err := srv.Client(t).PutBucketVersioning(ctx, &s3api.PutBucketVersioningInput{
		Bucket:                  &bucket,
		VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusSuspended},
	})
	if err != nil {
		t.Fatal(err)
	}
	view, err := b.AsOf(ctx, time.Now())
	if err != nil {
		t.Fatalf("AsOf on a bucket with suspended versioning: %v", err)
	}
	checkView(t, view, map[backend.Handle][]byte{h: []byte("config")})
}

func TestAsOfBeforeAnythingIsEmpty(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "", s3test.BucketOptions{Versioning: true})
	b := open(t, srv, bucket, "v")
	ctx := context.Background()
	marker := backend.Handle{Kind: backend.Marker}

	empty, err := b.AsOf(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, err = empty.Stat(ctx, marker)
	wantErr(t, "Stat in an empty bucket", err, backend.ErrNotFound)
	if err == nil || !strings.Contains(err.Error(), "no version of any vault object") {
		t.Errorf("Stat in an empty bucket: err = %v, want it to say the bucket holds nothing", err)
	}

	start := time.Now()
	waitPastSecond(start)
	if err := b.Put(ctx, marker, []byte("custody-vault")); err != nil {
		t.Fatal(err)
	}
	view, err := b.AsOf(ctx, start)
	if err != nil {
		t.Fatal(err)
	}
	_, err = view.Stat(ctx, marker)
	wantErr(t, "Stat before the first object", err, backend.ErrNotFound)
	if err == nil || !strings.Contains(err.Error(), "nothing existed") {
		t.Errorf("Stat before the first object: err = %v, want it to say nothing existed then", err)
	}
	checkView(t, view, nil)
}

// TestAsOfFollowsTheBackendRules is the read side of backendtest's suite,
// on a view listed in pages of three versions.
func TestAsOfFollowsTheBackendRules(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "", s3test.BucketOptions{Versioning: true})
	b := open(t, srv, bucket, "")
	ctx := context.Background()
	data := make([]byte, 1000)
	for i := range data {
		data[i] = byte(i % 251)
	}
	ranged := backend.Handle{Kind: backend.Packs, Name: "range"}
	empty := backend.Handle{Kind: backend.Index, Name: "empty"}
	want := map[backend.Handle][]byte{ranged: data, empty: {}}
	for i := range 10 {
		want[backend.Handle{Kind: backend.Packs, Name: string(rune('a'+i)) + "0pack"}] = testkit.RandomBytes(uint64(i), 10+i)
	}
	want[backend.Handle{Kind: backend.Config}] = []byte("config")
	want[backend.Handle{Kind: backend.Keys, Name: "k1"}] = []byte("key")
	for h, data := range want {
		if err := b.Put(ctx, h, data); err != nil {
			t.Fatal(err)
		}
	}
	view, err := b.asOf(ctx, time.Now(), 3)
	if err != nil {
		t.Fatal(err)
	}

	checkView(t, view, want)
	if got, err := view.Get(ctx, empty); err != nil || len(got) != 0 {
		t.Errorf("Get(empty) = %q, %v", got, err)
	}
	if got, err := view.GetRange(ctx, empty, 0, 0); err != nil || len(got) != 0 {
		t.Errorf("GetRange(empty, 0, 0) = %q, %v", got, err)
	}

	ranges := []struct {
		name           string
		offset, length int64
		ok             bool
	}{
		{"start", 0, 10, true},
		{"end", 990, 10, true},
		{"whole", 0, 1000, true},
		{"empty at end", 1000, 0, true},
		{"past end", 995, 10, false},
		{"offset past end", 1001, 0, false},
		{"huge length", 1, math.MaxInt64, false},
		{"negative offset", -1, 10, false},
		{"negative length", 0, -1, false},
	}
	for _, tt := range ranges {
		got, err := view.GetRange(ctx, ranged, tt.offset, tt.length)
		switch {
		case tt.ok && (err != nil || !bytes.Equal(got, data[tt.offset:tt.offset+tt.length])):
			t.Errorf("GetRange %s: %d bytes, %v", tt.name, len(got), err)
		case !tt.ok && err == nil:
			t.Errorf("GetRange %s = %d bytes, want an error", tt.name, len(got))
		case !tt.ok && tt.offset >= 0 && tt.length >= 0 && !errors.Is(err, io.ErrUnexpectedEOF):
			t.Errorf("GetRange %s: err = %v, want io.ErrUnexpectedEOF", tt.name, err)
		}
	}
	wantErr(t, "ReadRange past the end", view.ReadRange(ctx, ranged, 995, make([]byte, 10)), io.ErrUnexpectedEOF)

	missing := backend.Handle{Kind: backend.Packs, Name: "missing"}
	_, err = view.Get(ctx, missing)
	wantErr(t, "Get(missing)", err, backend.ErrNotFound)
	_, err = view.GetRange(ctx, missing, 0, 1)
	wantErr(t, "GetRange(missing)", err, backend.ErrNotFound)
	wantErr(t, "ReadRange(missing)", view.ReadRange(ctx, missing, 0, make([]byte, 1)), backend.ErrNotFound)
	_, err = view.Stat(ctx, missing)
	wantErr(t, "Stat(missing)", err, backend.ErrNotFound)

	for _, h := range []backend.Handle{
		{Kind: backend.Index, Name: "../x"}, {Kind: backend.Packs, Name: "a"},
		{Kind: backend.Config, Name: "x"}, {Kind: "tmp", Name: "x"},
	} {
		_, err := view.Get(ctx, h)
		wantErr(t, "Get("+h.String()+")", err, backend.ErrInvalidHandle)
		_, err = view.GetRange(ctx, h, 0, 1)
		wantErr(t, "GetRange("+h.String()+")", err, backend.ErrInvalidHandle)
		wantErr(t, "ReadRange("+h.String()+")", view.ReadRange(ctx, h, 0, make([]byte, 1)), backend.ErrInvalidHandle)
		_, err = view.Stat(ctx, h)
		wantErr(t, "Stat("+h.String()+")", err, backend.ErrInvalidHandle)
		wantErr(t, "Put("+h.String()+")", view.Put(ctx, h, nil), backend.ErrInvalidHandle)
		wantErr(t, "Delete("+h.String()+")", view.Delete(ctx, h), backend.ErrInvalidHandle)
	}
	for _, kind := range []backend.Kind{"tmp", "", "data/00"} {
		wantErr(t, "List("+string(kind)+")", view.List(ctx, kind, func(backend.Info) error { return nil }), backend.ErrInvalidHandle)
	}

	stop := errors.New("stop here")
	calls := 0
	err = view.List(ctx, backend.Packs, func(backend.Info) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("List with a failing callback: err = %v after %d calls, want the callback's error after 1", err, calls)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = view.Get(cancelled, ranged)
	wantErr(t, "Get with a cancelled context", err, context.Canceled)
	_, err = view.GetRange(cancelled, ranged, 0, 1)
	wantErr(t, "GetRange with a cancelled context", err, context.Canceled)
	wantErr(t, "ReadRange with a cancelled context", view.ReadRange(cancelled, ranged, 0, make([]byte, 1)), context.Canceled)
	_, err = view.Stat(cancelled, ranged)
	wantErr(t, "Stat with a cancelled context", err, context.Canceled)
	wantErr(t, "List with a cancelled context", view.List(cancelled, backend.Packs, func(backend.Info) error {
		t.Error("List called fn with a cancelled context")
		return nil
	}), context.Canceled)
	wantErr(t, "Put with a cancelled context", view.Put(cancelled, ranged, nil), context.Canceled)
	wantErr(t, "Delete with a cancelled context", view.Delete(cancelled, ranged), context.Canceled)
	_, err = b.AsOf(cancelled, time.Now())
	wantErr(t, "AsOf with a cancelled context", err, context.Canceled)
}

func TestAsOfOrdersTheStatesOfAKey(t *testing.T) {
	s := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	version := func(second time.Time, seq int) candidate { return candidate{second: second, seq: seq} }
	marker := func(second time.Time, seq int) candidate { return candidate{second: second, seq: seq, marker: true} }
	latest := func(c candidate) candidate { c.latest = true; return c }
	tests := []struct {
		name  string
		newer candidate
		older candidate
	}{
		{"the later second", version(s.Add(time.Second), 2), version(s, 1)},
		{"a later delete marker", marker(s.Add(time.Second), 1), version(s, 1)},
		{"the latest, in the same second", latest(version(s, 2)), marker(s, 1)},
		{"the latest delete marker, in the same second", latest(marker(s, 2)), version(s, 1)},
		{"the version listed first, in the same second", version(s, 1), version(s, 2)},
		{"the marker listed first, in the same second", marker(s, 3), marker(s, 4)},
		{"a version over a marker of the same second", version(s, 5), marker(s, 1)},
	}
	for _, tt := range tests {
		if !tt.newer.newer(tt.older) || tt.older.newer(tt.newer) {
			t.Errorf("%s: newer(%+v, %+v) is not the first", tt.name, tt.newer, tt.older)
		}
	}
}
