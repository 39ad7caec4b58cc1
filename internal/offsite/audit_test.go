package offsite

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/custodyhq/custody/internal/backend"
	"github.com/custodyhq/custody/internal/backend/s3"
	"github.com/custodyhq/custody/internal/backend/s3test"
	"github.com/custodyhq/custody/internal/catalog"
)

// The objects every test bucket starts with, as a push leaves them.
var (
	configH = backend.Handle{Kind: backend.Config}
	keyH    = backend.Handle{Kind: backend.Keys, Name: "k1"}
	packH   = backend.Handle{Kind: backend.Packs, Name: "ab0123"} // legal hold on in locked offsites
	indexH  = backend.Handle{Kind: backend.Index, Name: "i1"}
	seeded  = []backend.Handle{configH, keyH, packH, indexH}
)

// env is an offsite bucket seeded as a push would leave it, with the
// catalog's records of it, and an attacker's client for the same bucket.
type env struct {
	target *Target
	db     *catalog.DB
	raw    *s3api.Client // root credentials, no custody in between
	bucket string
	recs   map[string]catalog.OffsiteObject // by handle string
}

// newEnv creates a bucket (with Object Lock if lockMode is set), records
// an offsite for it reached through endpoint (the server's, or a proxy in
// front of it), takes its baseline and pushes the seeded objects.
func newEnv(t *testing.T, srv *s3test.Server, endpoint, lockMode string) *env {
	t.Helper()
	ctx := context.Background()
	bucket := srv.Bucket(t, "", s3test.BucketOptions{Versioning: true, ObjectLock: lockMode != ""})
	b, err := s3.New(ctx, s3.Config{Bucket: bucket, Endpoint: endpoint, Region: s3test.Region,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	db, err := catalog.Open(ctx, filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	rec := catalog.Offsite{Name: "far", URL: "s3://" + bucket, Endpoint: endpoint, Region: s3test.Region,
		LockMode: lockMode, Created: time.Now()}
	if lockMode != "" {
		rec.LockDays = 2
	}
	e := &env{target: &Target{Rec: rec, S3: b}, db: db, raw: srv.Client(t), bucket: bucket,
		recs: make(map[string]catalog.OffsiteObject)}
	base, err := TakeBaseline(ctx, e.target)
	if err != nil {
		t.Fatal(err)
	}
	e.target.Rec.Baseline = base.Encode()
	if err := db.AddOffsite(ctx, e.target.Rec); err != nil {
		t.Fatal(err)
	}
	for _, h := range seeded {
		var ret s3.Retention
		if lockMode != "" {
			ret = s3.Retention{Mode: types.ObjectLockMode(lockMode), Until: time.Now().Add(48 * time.Hour), LegalHold: h == packH}
		}
		e.push(t, h, ret)
	}
	return e
}

// push uploads h with random content and records it, as a push does.
func (e *env) push(t *testing.T, h backend.Handle, ret s3.Retention) {
	t.Helper()
	ctx := context.Background()
	data := []byte(rand.Text())
	w, err := e.target.S3.PutRetained(ctx, h, bytes.NewReader(data), int64(len(data)), ret)
	if err != nil {
		t.Fatal(err)
	}
	rec := catalog.OffsiteObject{Key: h.String(), Size: w.Size, VersionID: w.VersionID, SHA256: w.SHA256,
		RetainUntil: ret.Until, LegalHold: ret.LegalHold, PushedAt: time.Now()}
	if err := e.db.PutOffsiteObjects(ctx, e.target.Rec.Name, []catalog.OffsiteObject{rec}); err != nil {
		t.Fatal(err)
	}
	e.recs[h.String()] = rec
}

// key is h's object key; version is the version id recorded for it.
func (e *env) key(h backend.Handle) *string     { return aws.String(e.target.S3.Key(h)) }
func (e *env) version(h backend.Handle) *string { return aws.String(e.recs[h.String()].VersionID) }

// overwrite writes new content over h, as an attacker can (unconditionally),
// and returns the new version's id.
func (e *env) overwrite(t *testing.T, h backend.Handle) string {
	t.Helper()
	out, err := e.raw.PutObject(context.Background(), &s3api.PutObjectInput{Bucket: &e.bucket, Key: e.key(h), Body: strings.NewReader("ransom note")})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.VersionId)
}

func (e *env) audit(t *testing.T) Report {
	t.Helper()
	r, err := Audit(context.Background(), e.target, e.db)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// must fails the test on err: the attack itself did not work.
func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("tamper: %s: %v", what, err)
	}
}

func TestAuditOfUntouchedBucketFindsNothing(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	for _, mode := range []string{"", "GOVERNANCE", "COMPLIANCE"} {
		t.Run("lock="+mode, func(t *testing.T) {
			e := newEnv(t, srv, srv.Endpoint, mode)
			r := e.audit(t)
			if len(r.Findings) != 0 || r.Tampered() {
				t.Fatalf("findings on an untouched bucket: %+v", r.Findings)
			}
			if r.Checked != len(seeded) || r.Offsite != "far" || r.Finished.Before(r.Started) {
				t.Errorf("report = %+v, want %d checked", r, len(seeded))
			}
		})
	}
}

// TestAuditFindsTampering does one thing an attacker (or a careless admin)
// can do to an offsite bucket, and expects exactly one finding about it.
func TestAuditFindsTampering(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	ctx := context.Background()
	tests := []struct {
		name   string
		lock   string // the offsite's lock mode; "" for a bucket without Object Lock
		tamper func(t *testing.T, e *env) backend.Handle
		want   string
		bucket bool // the finding is about the bucket, not an object
	}{
		{"deleting every version of an object", "", func(t *testing.T, e *env) backend.Handle {
			_, err := e.raw.DeleteObject(ctx, &s3api.DeleteObjectInput{Bucket: &e.bucket, Key: e.key(keyH), VersionId: e.version(keyH)})
			must(t, "delete version", err)
			return keyH
		}, Missing, false},
		{"writing over an object", "", func(t *testing.T, e *env) backend.Handle {
			e.overwrite(t, indexH)
			return indexH
		}, Overwritten, false},
		{"deleting the pushed version after writing over it", "", func(t *testing.T, e *env) backend.Handle {
			e.overwrite(t, configH)
			_, err := e.raw.DeleteObject(ctx, &s3api.DeleteObjectInput{Bucket: &e.bucket, Key: e.key(configH), VersionId: e.version(configH)})
			must(t, "delete version", err)
			return configH
		}, DeletedVersion, false},
		{"hiding a locked object behind a delete marker", "GOVERNANCE", func(t *testing.T, e *env) backend.Handle {
			_, err := e.raw.DeleteObject(ctx, &s3api.DeleteObjectInput{Bucket: &e.bucket, Key: e.key(keyH)})
			must(t, "delete", err)
			return keyH
		}, DeleteMarker, false},
		{"shortening governance retention with the bypass", "GOVERNANCE", func(t *testing.T, e *env) backend.Handle {
			_, err := e.raw.PutObjectRetention(ctx, &s3api.PutObjectRetentionInput{Bucket: &e.bucket, Key: e.key(indexH), VersionId: e.version(indexH),
				BypassGovernanceRetention: aws.Bool(true),
				Retention:                 &types.ObjectLockRetention{Mode: types.ObjectLockRetentionModeGovernance, RetainUntilDate: aws.Time(time.Now().Add(time.Hour))}})
			must(t, "shorten retention", err)
			return indexH
		}, Unlocked, false},
		{"lifting a legal hold", "GOVERNANCE", func(t *testing.T, e *env) backend.Handle {
			_, err := e.raw.PutObjectLegalHold(ctx, &s3api.PutObjectLegalHoldInput{Bucket: &e.bucket, Key: e.key(packH), VersionId: e.version(packH),
				LegalHold: &types.ObjectLockLegalHold{Status: types.ObjectLockLegalHoldStatusOff}})
			must(t, "lift legal hold", err)
			return packH
		}, Unlocked, false},
		{"retention earlier than recorded", "GOVERNANCE", func(t *testing.T, e *env) backend.Handle {
			rec := e.recs[configH.String()]
			rec.RetainUntil = rec.RetainUntil.Add(24 * time.Hour) // the catalog keeps the later date
			must(t, "record", e.db.PutOffsiteObjects(ctx, "far", []catalog.OffsiteObject{rec}))
			return configH
		}, Unlocked, false},
		{"an object without retention in a locked offsite", "COMPLIANCE", func(t *testing.T, e *env) backend.Handle {
			h := backend.Handle{Kind: backend.Keys, Name: "bare"}
			e.push(t, h, s3.Retention{})
			return h
		}, Unlocked, false},
		{"a governance retention where compliance is due", "COMPLIANCE", func(t *testing.T, e *env) backend.Handle {
			h := backend.Handle{Kind: backend.Versions, Name: "soft"}
			e.push(t, h, s3.Retention{Mode: types.ObjectLockModeGovernance, Until: time.Now().Add(48 * time.Hour)})
			return h
		}, Unlocked, false},
		{"suspending versioning", "", func(t *testing.T, e *env) backend.Handle {
			_, err := e.raw.PutBucketVersioning(ctx, &s3api.PutBucketVersioningInput{Bucket: &e.bucket,
				VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusSuspended}})
			must(t, "suspend versioning", err)
			return backend.Handle{}
		}, VersioningSuspended, true},
		{"adding a bucket policy", "GOVERNANCE", func(t *testing.T, e *env) backend.Handle {
			_, err := e.raw.PutBucketPolicy(ctx, &s3api.PutBucketPolicyInput{Bucket: &e.bucket, Policy: aws.String(fmt.Sprintf(
				`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:DeleteObjectVersion","Resource":"arn:aws:s3:::%s/*"}]}`, e.bucket))})
			must(t, "put policy", err)
			return backend.Handle{}
		}, PolicyChanged, true},
		{"adding a default retention", "GOVERNANCE", func(t *testing.T, e *env) backend.Handle {
			_, err := e.raw.PutObjectLockConfiguration(ctx, &s3api.PutObjectLockConfigurationInput{Bucket: &e.bucket,
				ObjectLockConfiguration: &types.ObjectLockConfiguration{ObjectLockEnabled: types.ObjectLockEnabledEnabled,
					Rule: &types.ObjectLockRule{DefaultRetention: &types.DefaultRetention{Mode: types.ObjectLockRetentionModeGovernance, Days: aws.Int32(1)}}}})
			must(t, "put Object Lock configuration", err)
			return backend.Handle{}
		}, ObjectLockChanged, true},
		{"adding a lifecycle rule", "", func(t *testing.T, e *env) backend.Handle {
			_, err := e.raw.PutBucketLifecycleConfiguration(ctx, &s3api.PutBucketLifecycleConfigurationInput{Bucket: &e.bucket,
				LifecycleConfiguration: &types.BucketLifecycleConfiguration{Rules: []types.LifecycleRule{{
					ID: aws.String("expire"), Status: types.ExpirationStatusEnabled, Filter: &types.LifecycleRuleFilter{Prefix: aws.String("")},
					NoncurrentVersionExpiration: &types.NoncurrentVersionExpiration{NoncurrentDays: aws.Int32(1)}}}}})
			if s3.APICode(err) == "NotImplemented" {
				t.Skip("versitygw has no lifecycle configuration; TestAuditFindsLifecycleRulesThroughProxy fakes one")
			}
			must(t, "put lifecycle", err)
			return backend.Handle{}
		}, LifecycleChanged, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, srv, srv.Endpoint, tt.lock)
			h := tt.tamper(t, e)
			key := h.String()
			if tt.bucket {
				key = ""
			}
			r := e.audit(t)
			if len(r.Findings) != 1 || r.Findings[0].Kind != tt.want || r.Findings[0].Key != key {
				t.Fatalf("findings = %+v, want one %s for %q", r.Findings, tt.want, key)
			}
			if !r.Tampered() {
				t.Error("Tampered() = false")
			}
			t.Logf("%s %s: %s", r.Findings[0].Kind, r.Findings[0].Key, r.Findings[0].Detail)
		})
	}
}

func TestAuditSortsAndMergesFindings(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	ctx := context.Background()
	e := newEnv(t, srv, srv.Endpoint, "")
	// Two versions over the index and a delete marker on top: one
	// Overwritten and one DeleteMarker for it; the config and key deleted.
	e.overwrite(t, indexH)
	e.overwrite(t, indexH)
	for _, in := range []*s3api.DeleteObjectInput{
		{Bucket: &e.bucket, Key: e.key(indexH)},
		{Bucket: &e.bucket, Key: e.key(keyH), VersionId: e.version(keyH)},
		{Bucket: &e.bucket, Key: e.key(configH), VersionId: e.version(configH)},
	} {
		_, err := e.raw.DeleteObject(ctx, in)
		must(t, "delete", err)
	}
	r := e.audit(t)
	var got []string
	for _, f := range r.Findings {
		got = append(got, f.Kind+" "+f.Key)
	}
	want := []string{DeleteMarker + " index/i1", Missing + " config", Missing + " keys/k1", Overwritten + " index/i1"}
	if !slices.Equal(got, want) {
		t.Fatalf("findings = %q, want %q", got, want)
	}
	if d := r.Findings[3].Detail; !strings.Contains(d, "2 other version(s)") {
		t.Errorf("overwritten detail %q does not count the 2 extra versions", d)
	}
}

func TestAuditReportsUnrecordedObjectsWithoutCallingThemTampering(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	e := newEnv(t, srv, srv.Endpoint, "GOVERNANCE")
	h := backend.Handle{Kind: backend.Versions, Name: "elsewhere"}
	_, err := e.raw.PutObject(context.Background(), &s3api.PutObjectInput{Bucket: &e.bucket, Key: e.key(h), Body: strings.NewReader("x")})
	must(t, "put", err)
	_, err = e.raw.PutObject(context.Background(), &s3api.PutObjectInput{Bucket: &e.bucket, Key: aws.String("notes.txt"), Body: strings.NewReader("x")})
	must(t, "put", err)
	r := e.audit(t)
	if len(r.Findings) != 1 || r.Findings[0].Kind != Unexpected || r.Findings[0].Key != h.String() {
		t.Fatalf("findings = %+v, want one %s for %s (and nothing for notes.txt)", r.Findings, Unexpected, h)
	}
	if r.Tampered() {
		t.Error("Tampered() = true for an unrecorded object alone")
	}
}

// fakingProxy stands between custody and the S3 server and lets a test
// answer some requests itself, for what versitygw cannot do.
type fakingProxy struct {
	URL  string
	fake atomic.Pointer[func(w http.ResponseWriter, r *http.Request) bool] // true: answered
}

func newFakingProxy(t *testing.T, srv *s3test.Server) *fakingProxy {
	t.Helper()
	target, err := url.Parse(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	// The Host header goes through unchanged: the request is signed for it.
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		r.Out.Host = r.In.Host
	}}
	p := &fakingProxy{}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f := p.fake.Load(); f != nil && (*f)(w, r) {
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	p.URL = hs.URL
	return p
}

func (p *fakingProxy) answer(f func(w http.ResponseWriter, r *http.Request) bool) { p.fake.Store(&f) }

// TestAuditFindsCustomerKeyEncryptionThroughProxy fakes the answers for
// objects re-encrypted with SSE-C (Codefinger): versitygw ignores SSE-C
// headers and stores such uploads in the clear, so it cannot produce them.
func TestAuditFindsCustomerKeyEncryptionThroughProxy(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	// awsRefusal is AWS's answer to a read without the customer key: 400
	// to HEAD, with no body, and 400 to GET with the reason.
	awsRefusal := func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidRequest</Code><Message>The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object.</Message></Error>`)
			return
		}
		w.WriteHeader(http.StatusBadRequest)
	}
	tests := []struct {
		name string
		// tamper changes the bucket and returns the version to fake
		// answers for ("" for any).
		tamper func(t *testing.T, e *env) string
		answer func(w http.ResponseWriter, r *http.Request)
		want   []string
	}{
		{"re-encrypted in place", func(t *testing.T, e *env) string { return "" }, awsRefusal,
			[]string{CustomerKeyEncrypted}},
		{"HEAD naming the algorithm", func(t *testing.T, e *env) string { return "" }, func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodHead {
				awsRefusal(w, r)
				return
			}
			w.Header().Set("X-Amz-Server-Side-Encryption-Customer-Algorithm", "AES256")
			w.Header().Set("Content-Length", "26")
			w.WriteHeader(http.StatusOK)
		}, []string{CustomerKeyEncrypted}},
		{"an encrypted copy over a locked object", func(t *testing.T, e *env) string {
			return e.overwrite(t, packH)
		}, awsRefusal, []string{CustomerKeyEncrypted, Overwritten}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			proxy := newFakingProxy(t, srv)
			e := newEnv(t, srv, proxy.URL, "GOVERNANCE")
			version := tt.tamper(t, e)
			path := "/" + e.bucket + "/" + e.target.S3.Key(packH)
			proxy.answer(func(w http.ResponseWriter, r *http.Request) bool {
				q := r.URL.Query()
				if r.URL.Path != path || q.Has("retention") || q.Has("legal-hold") || version != "" && q.Get("versionId") != version {
					return false
				}
				tt.answer(w, r)
				return true
			})
			r := e.audit(t)
			var kinds []string
			for _, f := range r.Findings {
				if f.Key != packH.String() {
					t.Errorf("finding for %q: %+v", f.Key, f)
				}
				kinds = append(kinds, f.Kind)
			}
			if !slices.Equal(kinds, tt.want) || !r.Tampered() {
				t.Fatalf("findings = %+v, want %q for %s", r.Findings, tt.want, packH)
			}
			t.Log(r.Findings[0].Detail)
		})
	}
}

// TestAuditRefusesToGuessWhyHeadFailed: a 400 to HEAD that GET does not
// explain as encryption is an error, not a finding.
func TestAuditRefusesToGuessWhyHeadFailed(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	proxy := newFakingProxy(t, srv)
	e := newEnv(t, srv, proxy.URL, "")
	path := "/" + e.bucket + "/" + e.target.S3.Key(keyH)
	proxy.answer(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != path || r.Method != http.MethodHead {
			return false
		}
		w.WriteHeader(http.StatusBadRequest)
		return true
	})
	if _, err := Audit(context.Background(), e.target, e.db); err == nil {
		t.Fatal("Audit succeeded though HEAD failed for no known reason")
	}
}

// TestAuditFindsLifecycleRulesThroughProxy fakes a lifecycle configuration,
// which versitygw does not implement.
func TestAuditFindsLifecycleRulesThroughProxy(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	proxy := newFakingProxy(t, srv)
	e := newEnv(t, srv, proxy.URL, "GOVERNANCE")
	proxy.answer(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || r.URL.Path != "/"+e.bucket || !r.URL.Query().Has("lifecycle") {
			return false
		}
		w.Header().Set("Content-Type", "application/xml")
		fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><LifecycleConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Rule><ID>expire</ID><Filter><Prefix></Prefix></Filter><Status>Enabled</Status><NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays></NoncurrentVersionExpiration></Rule></LifecycleConfiguration>`)
		return true
	})
	r := e.audit(t)
	if len(r.Findings) != 1 || r.Findings[0].Kind != LifecycleChanged || r.Findings[0].Key != "" || !r.Tampered() {
		t.Fatalf("findings = %+v, want one %s for the bucket", r.Findings, LifecycleChanged)
	}
	if d := r.Findings[0].Detail; !strings.Contains(d, "there was none") || !strings.Contains(d, `"NoncurrentDays":1`) {
		t.Errorf("detail %q does not say a rule was added and show it", d)
	}
}

func TestLockProblems(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	later := now.Add(24*time.Hour + 123456789) // the push's nanoseconds
	tests := []struct {
		name string
		mode string
		rec  catalog.OffsiteObject
		got  lockState
		want int // problems
	}{
		{"as recorded, to the second", "GOVERNANCE", catalog.OffsiteObject{RetainUntil: later}, lockState{Mode: "GOVERNANCE", Until: later.Truncate(time.Second)}, 0},
		{"extended", "GOVERNANCE", catalog.OffsiteObject{RetainUntil: later}, lockState{Mode: "GOVERNANCE", Until: later.Add(time.Hour)}, 0},
		{"stronger mode", "GOVERNANCE", catalog.OffsiteObject{RetainUntil: later}, lockState{Mode: "COMPLIANCE", Until: later}, 0},
		{"shortened", "GOVERNANCE", catalog.OffsiteObject{RetainUntil: later}, lockState{Mode: "GOVERNANCE", Until: later.Add(-time.Second)}, 1},
		{"removed", "GOVERNANCE", catalog.OffsiteObject{RetainUntil: later}, lockState{}, 1},
		{"weaker mode", "COMPLIANCE", catalog.OffsiteObject{RetainUntil: later}, lockState{Mode: "GOVERNANCE", Until: later}, 1},
		{"weaker and shorter", "COMPLIANCE", catalog.OffsiteObject{RetainUntil: later}, lockState{Mode: "GOVERNANCE", Until: now}, 2},
		{"lapsed and gone", "GOVERNANCE", catalog.OffsiteObject{RetainUntil: now.Add(-time.Hour)}, lockState{}, 0},
		{"never retained in a locked offsite", "COMPLIANCE", catalog.OffsiteObject{}, lockState{}, 1},
		{"recorded retention, offsite unlocked since", "", catalog.OffsiteObject{RetainUntil: later}, lockState{}, 1},
		{"legal hold kept", "", catalog.OffsiteObject{LegalHold: true}, lockState{Hold: true}, 0},
		{"legal hold lifted", "", catalog.OffsiteObject{LegalHold: true}, lockState{}, 1},
		{"legal hold nobody asked for", "", catalog.OffsiteObject{}, lockState{Hold: true}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := lockProblems(tt.mode, tt.rec, tt.got, now); len(got) != tt.want {
				t.Errorf("problems = %q, want %d", got, tt.want)
			}
		})
	}
}

func TestCanonicalConfigurationsHashEqualWhenEqual(t *testing.T) {
	rule := func(id string, days int32) types.LifecycleRule {
		return types.LifecycleRule{ID: aws.String(id), Status: types.ExpirationStatusEnabled,
			Filter: &types.LifecycleRuleFilter{Prefix: aws.String("")}, Expiration: &types.LifecycleExpiration{Days: aws.Int32(days)}}
	}
	a, err := canonicalRules([]types.LifecycleRule{rule("a", 1), rule("b", 2)})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := canonicalRules([]types.LifecycleRule{rule("b", 2), rule("a", 1)})
	c, _ := canonicalRules([]types.LifecycleRule{rule("b", 3), rule("a", 1)})
	if a == "" || hashOf(a) != hashOf(b) || hashOf(a) == hashOf(c) {
		t.Errorf("lifecycle: reordered %q vs %q, changed %q", a, b, c)
	}
	if none, _ := canonicalRules([]types.LifecycleRule{}); none != "" {
		t.Errorf("no rules = %q, want none", none)
	}

	p1 := canonicalPolicy(aws.String(`{"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}`))
	p2 := canonicalPolicy(aws.String("{\"Statement\":[{\"Action\":\"s3:*\",\"Condition\":{\"Bool\":{\"aws:SecureTransport\":\"false\"}},\n\"Principal\":\"*\",\"Effect\":\"Deny\"}],\"Version\":\"2012-10-17\"}"))
	if p1 != p2 || canonicalPolicy(aws.String(" ")) != "" || canonicalPolicy(nil) != "" {
		t.Errorf("policies: %q vs %q", p1, p2)
	}

	lock := func(days *int32) *types.ObjectLockConfiguration {
		c := &types.ObjectLockConfiguration{ObjectLockEnabled: types.ObjectLockEnabledEnabled}
		if days != nil {
			c.Rule = &types.ObjectLockRule{DefaultRetention: &types.DefaultRetention{Mode: types.ObjectLockRetentionModeCompliance, Days: days}}
		}
		return c
	}
	bare, _ := canonicalJSON(lock(nil))
	emptyRule, _ := canonicalJSON(&types.ObjectLockConfiguration{ObjectLockEnabled: types.ObjectLockEnabledEnabled, Rule: &types.ObjectLockRule{}})
	withRule, _ := canonicalJSON(lock(aws.Int32(7)))
	if bare != `{"ObjectLockEnabled":"Enabled"}` || emptyRule != bare || withRule == bare {
		t.Errorf("object lock: bare %q, empty rule %q, with rule %q", bare, emptyRule, withRule)
	}
}

func TestBaselineEncoding(t *testing.T) {
	sum := strings.Repeat("0a", 32)
	b := Baseline{Versioning: "Enabled", ObjectLock: sum}
	// The stored form: changing it needs a migration of recorded offsites.
	const golden = `{"versioning":"Enabled","object_lock":"0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a","policy":"","lifecycle":""}`
	if got := string(b.Encode()); got != golden {
		t.Fatalf("Encode = %s, want %s", got, golden)
	}
	if got, err := DecodeBaseline([]byte(golden)); err != nil || got != b {
		t.Fatalf("DecodeBaseline = %+v, %v", got, err)
	}
	for _, bad := range []string{
		`{"versioning":"Enabled","extra":1}`,
		`{"versioning":"Sometimes"}`,
		`{"policy":"abc"}`,
		`{"lifecycle":"` + strings.Repeat("zz", 32) + `"}`,
		`{"versioning":"Enabled"} {}`,
		`[]`,
		`null`,
	} {
		if _, err := DecodeBaseline([]byte(bad)); err == nil {
			t.Errorf("DecodeBaseline(%s) succeeded", bad)
		}
	}
	if _, err := DecodeBaseline(nil); !errors.Is(err, errNoBaseline) {
		t.Errorf("DecodeBaseline(nil) = %v, want errNoBaseline", err)
	}
}

func FuzzDecodeBaseline(f *testing.F) {
	f.Add([]byte(`{"versioning":"Enabled","object_lock":"","policy":"","lifecycle":""}`))
	f.Add([]byte(`{"versioning":"Suspended","policy":"` + strings.Repeat("ab", 32) + `"}`))
	f.Add([]byte(` {"lifecycle":""} `))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := DecodeBaseline(data)
		if err != nil {
			return
		}
		again, err := DecodeBaseline(b.Encode())
		if err != nil || again != b {
			t.Fatalf("re-decoding %s: %+v, %v", b.Encode(), again, err)
		}
	})
}
