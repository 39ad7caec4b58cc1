package s3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/custodyhq/custody/internal/backend"
	"github.com/custodyhq/custody/internal/backend/backendtest"
	"github.com/custodyhq/custody/internal/backend/local"
	"github.com/custodyhq/custody/internal/backend/s3test"
	"github.com/custodyhq/custody/internal/testkit"
)

// open returns a backend on bucket of srv with the server's root credentials.
func open(t testing.TB, srv *s3test.Server, bucket, prefix string) *S3 {
	t.Helper()
	b, err := New(context.Background(), Config{
		Bucket: bucket, Prefix: prefix, Endpoint: srv.Endpoint,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func TestConformance(t *testing.T) {
	srv := s3test.Start(t)
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		return open(t, srv, srv.Bucket(t, "", s3test.BucketOptions{}), "")
	})
}

// Offsite buckets are versioned and Object-Locked, and may hold several
// vaults under prefixes: the rules must hold there too.
func TestConformanceInLockedBucketUnderPrefix(t *testing.T) {
	srv := s3test.Start(t)
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		bucket := srv.Bucket(t, "", s3test.BucketOptions{Versioning: true, ObjectLock: true})
		return open(t, srv, bucket, "/vaults/one/")
	})
}

func TestPutRefusesAnObjectAnotherClientWrote(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "", s3test.BucketOptions{})
	b := open(t, srv, bucket, "v")
	ctx := context.Background()
	h := backend.Handle{Kind: backend.Index, Name: "i1"}
	// Written behind the backend's back, so only the server's check can refuse.
	_, err := srv.Client(t).PutObject(ctx, &s3api.PutObjectInput{
		Bucket: &bucket, Key: aws.String("v/index/i1"), Body: strings.NewReader("theirs"),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{5, 3 << 20} { // one request, and multipart
		b.partSize = 1 << 20
		if err := b.Put(ctx, h, make([]byte, size)); !errors.Is(err, backend.ErrExists) {
			t.Errorf("Put of %d bytes over another client's object: err = %v, want ErrExists", size, err)
		}
	}
	if got, err := b.Get(ctx, h); err != nil || string(got) != "theirs" {
		t.Errorf("Get = %q, %v; want the first object untouched", got, err)
	}
	uploads, err := srv.Client(t).ListMultipartUploads(ctx, &s3api.ListMultipartUploadsInput{Bucket: &bucket})
	if err != nil || len(uploads.Uploads) != 0 {
		t.Errorf("multipart uploads left behind: %d (%v); a refused upload must be aborted", len(uploads.Uploads), err)
	}
}

// compositeSHA256 is S3's checksum of a multipart object: the SHA-256 of the
// parts' SHA-256 digests, then "-" and the number of parts.
func compositeSHA256(data []byte, part int) string {
	all := sha256.New()
	n := 0
	for off := 0; off < len(data); off += part {
		sum := sha256.Sum256(data[off:min(off+part, len(data))])
		all.Write(sum[:])
		n++
	}
	return fmt.Sprintf("%s-%d", base64.StdEncoding.EncodeToString(all.Sum(nil)), n)
}

func TestLargeObjectsGoInPartsWithSHA256(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "", s3test.BucketOptions{Versioning: true})
	b := open(t, srv, bucket, "")
	c := srv.Client(t)
	ctx := context.Background()
	data := testkit.RandomBytes(7, 2*partSize+5) // three parts, the last one short

	fromMemory := backend.Handle{Kind: backend.Packs, Name: "aa01"}
	if err := b.Put(ctx, fromMemory, data); err != nil {
		t.Fatal(err)
	}
	f, err := b.CreateTemp()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	fromFile := backend.Handle{Kind: backend.Packs, Name: "bb02"}
	if err := b.PutFile(ctx, fromFile, f); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.Name()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("PutFile left its temporary file: %v", err)
	}

	want := compositeSHA256(data, partSize)
	for _, h := range []backend.Handle{fromMemory, fromFile} {
		// The composite checksum is over the parts' SHA-256 digests, so it
		// matching proves each part went with its own SHA-256.
		attrs, err := c.GetObjectAttributes(ctx, &s3api.GetObjectAttributesInput{
			Bucket: &bucket, Key: aws.String(b.key(h)),
			ObjectAttributes: []types.ObjectAttributes{types.ObjectAttributesChecksum},
		})
		if err != nil {
			t.Fatalf("%s: %v", h, err)
		}
		if attrs.Checksum == nil || strings.TrimSuffix(aws.ToString(attrs.Checksum.ChecksumSHA256), "-3")+"-3" != want {
			t.Errorf("%s: stored checksum %+v; want composite SHA-256 %s", h, attrs.Checksum, want)
		}
		got, err := b.Get(ctx, h)
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("Get(%s) = %d bytes, %v; want the %d bytes put", h, len(got), err, len(data))
		}
		if err := b.Put(ctx, h, data); !errors.Is(err, backend.ErrExists) {
			t.Errorf("second multipart Put(%s): err = %v, want ErrExists", h, err)
		}
	}
	versions, err := c.ListObjectVersions(ctx, &s3api.ListObjectVersionsInput{Bucket: &bucket})
	if err != nil || len(versions.Versions) != 2 {
		t.Errorf("bucket holds %d versions (%v), want 2: a refused Put must not add one", len(versions.Versions), err)
	}
}

func TestSmallObjectsCarrySHA256(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "", s3test.BucketOptions{})
	b := open(t, srv, bucket, "")
	ctx := context.Background()
	data := []byte("a sealed index")
	h := backend.Handle{Kind: backend.Index, Name: "i1"}
	if err := b.Put(ctx, h, data); err != nil {
		t.Fatal(err)
	}
	out, err := srv.Client(t).HeadObject(ctx, &s3api.HeadObjectInput{
		Bucket: &bucket, Key: aws.String(b.key(h)), ChecksumMode: types.ChecksumModeEnabled,
	})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if got, want := aws.ToString(out.ChecksumSHA256), base64.StdEncoding.EncodeToString(sum[:]); got != want {
		t.Errorf("stored SHA-256 = %q, want %q", got, want)
	}
}

// TestLayoutMatchesLocal puts the same objects into a local vault and a
// bucket and wants the same relative paths, so a copied vault works.
func TestLayoutMatchesLocal(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "", s3test.BucketOptions{})
	b := open(t, srv, bucket, "a/b")
	dir := t.TempDir()
	l, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	for _, kind := range backend.Kinds() {
		h := backend.Handle{Kind: kind}
		if !kind.Singleton() {
			h.Name = "ab12" + string(kind)
		}
		for _, be := range []backend.Backend{b, l} {
			if err := be.Put(ctx, h, []byte(h.String())); err != nil {
				t.Fatal(err)
			}
		}
	}
	var files []string
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, path)
			files = append(files, "a/b/"+filepath.ToSlash(rel))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	out, err := srv.Client(t).ListObjectsV2(ctx, &s3api.ListObjectsV2Input{Bucket: &bucket})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	slices.Sort(files)
	slices.Sort(keys)
	if !slices.Equal(files, keys) {
		t.Errorf("bucket keys %q\nlocal files %q", keys, files)
	}
}

func TestParseURL(t *testing.T) {
	tests := []struct {
		in             string
		bucket, prefix string
		ok             bool
	}{
		{"s3://vault", "vault", "", true},
		{"s3://vault/", "vault", "", true},
		{"s3://my.vault-1/team/a", "my.vault-1", "team/a", true},
		{"s3://vault/team/a/", "vault", "team/a", true},
		{"s3://vault//a", "vault", "a", true},
		{"s3://vault/a//b", "", "", false},
		{"s3://vault/a/../b", "", "", false},
		{"s3://vault/./b", "", "", false},
		{"s3://Vault", "", "", false},
		{"s3://ab", "", "", false},
		{"s3://vault_1", "", "", false},
		{"s3://key:secret@vault/x", "", "", false},
		{"s3://vault:9000/x", "", "", false},
		{"s3://vault/x?region=eu", "", "", false},
		{"s3://vault/x#frag", "", "", false},
		{"s3:vault", "", "", false},
		{"s3://", "", "", false},
		{"https://vault/x", "", "", false},
		{"vault/x", "", "", false},
		{"", "", "", false},
	}
	for _, tt := range tests {
		cfg, err := ParseURL(tt.in)
		if tt.ok != (err == nil) || cfg.Bucket != tt.bucket || cfg.Prefix != tt.prefix {
			t.Errorf("ParseURL(%q) = %+v, %v; want bucket %q prefix %q ok %v", tt.in, cfg, err, tt.bucket, tt.prefix, tt.ok)
		}
		if err != nil && strings.Contains(err.Error(), "secret") && !strings.Contains(err.Error(), "credentials") {
			t.Errorf("ParseURL(%q): error %q", tt.in, err)
		}
	}
}

func FuzzParseURL(f *testing.F) {
	for _, s := range []string{"s3://vault/team/a", "s3://v.x-y/", "s3://a:b@c/d", "s3://vault/%2e%2e/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cfg, err := ParseURL(s)
		if err != nil {
			return
		}
		if validateBucket(cfg.Bucket) != nil || validatePrefix(cfg.Prefix) != nil {
			t.Fatalf("ParseURL(%q) = %+v, which New would refuse", s, cfg)
		}
		again, err := ParseURL("s3://" + cfg.Bucket + "/" + cfg.Prefix)
		if err != nil || again != cfg {
			t.Fatalf("ParseURL(%q) = %+v, but its canonical form parses to %+v, %v", s, cfg, again, err)
		}
	})
}

// isolate points the AWS default chain at nothing but the environment
// variables this test sets: no files from the home folder, no instance role.
func isolate(t *testing.T) {
	dir := t.TempDir()
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

func TestCredentialsFromEnvironment(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "", s3test.BucketOptions{})
	isolate(t)
	ctx := context.Background()
	if _, err := New(ctx, Config{Bucket: bucket, Endpoint: srv.Endpoint}); err == nil || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") {
		t.Errorf("New without credentials: err = %v, want advice naming AWS_ACCESS_KEY_ID", err)
	}

	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	b, err := New(ctx, Config{Bucket: bucket, Endpoint: srv.Endpoint})
	if err != nil {
		t.Fatalf("New with credentials in the environment: %v", err)
	}
	if err := b.Put(ctx, backend.Handle{Kind: backend.Config}, []byte("c")); err != nil {
		t.Errorf("Put: %v", err)
	}
}

func TestCredentialsFromProfile(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "", s3test.BucketOptions{})
	isolate(t)
	creds := fmt.Sprintf("[offsite]\naws_access_key_id = %s\naws_secret_access_key = %s\n", srv.AccessKey, srv.SecretKey)
	if err := os.WriteFile(os.Getenv("AWS_SHARED_CREDENTIALS_FILE"), []byte(creds), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_PROFILE", "offsite")
	if _, err := New(context.Background(), Config{Bucket: bucket, Endpoint: srv.Endpoint}); err != nil {
		t.Errorf("New with credentials from profile: %v", err)
	}
}

func TestWrongSecretIsRefusedWithoutShowingIt(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "", s3test.BucketOptions{})
	wrong := "WRONG" + srv.SecretKey
	_, err := New(context.Background(), Config{Bucket: bucket, Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: wrong})
	if err == nil {
		t.Fatal("New with a wrong secret key succeeded")
	}
	if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), srv.SecretKey) {
		t.Errorf("error shows the secret key: %v", err)
	}
	if !strings.Contains(err.Error(), "secret key") {
		t.Errorf("error %q does not say to check the secret key", err)
	}
}

func TestNewRefusesMissingBucketAndBadConfig(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()
	good := Config{Bucket: "missing-bucket", Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey}
	if _, err := New(ctx, good); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("New on a missing bucket: err = %v, want one saying so", err)
	}
	for _, bad := range []func(*Config){
		func(c *Config) { c.Bucket = "" },
		func(c *Config) { c.Prefix = "a/../b" },
		func(c *Config) { c.Endpoint = "127.0.0.1:9000" },
		func(c *Config) { c.Endpoint = "http://user:pw@127.0.0.1:9000" },
		func(c *Config) { c.SecretKey = "" },
	} {
		cfg := good
		bad(&cfg)
		_, err := New(ctx, cfg)
		if err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		} else if strings.Contains(err.Error(), "pw@") || strings.Contains(err.Error(), srv.SecretKey) {
			t.Errorf("New(%+v): error shows a secret: %v", cfg, err)
		}
	}
}

// frontend puts a proxy in front of srv that answers the next
// failures.Load() requests with 503 SlowDown itself.
func frontend(t *testing.T, srv *s3test.Server, withTLS bool, failures *atomic.Int32) string {
	target, err := url.Parse(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failures.Add(-1) >= 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>slow down</Message></Error>`)
			return
		}
		proxy.ServeHTTP(w, r)
	})
	var fe *httptest.Server
	if withTLS {
		fe = httptest.NewTLSServer(h)
	} else {
		fe = httptest.NewServer(h)
	}
	t.Cleanup(fe.Close)
	return fe.URL
}

func TestRetriesServerErrors(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "", s3test.BucketOptions{})
	var failures atomic.Int32
	ctx := context.Background()
	cfg := Config{Bucket: bucket, Endpoint: frontend(t, srv, false, &failures), AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Retries: 3}
	b, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	failures.Store(3)
	h := backend.Handle{Kind: backend.Keys, Name: "k1"}
	if err := b.Put(ctx, h, []byte("key")); err != nil {
		t.Errorf("Put through 3 failures with 3 retries: %v", err)
	}
	failures.Store(1)
	if _, err := b.Get(ctx, h); err != nil {
		t.Errorf("Get through 1 failure: %v", err)
	}

	cfg.Retries = -1
	b, err = New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	failures.Store(1)
	if _, err := b.Get(ctx, h); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("Get without retries through a failure: err = %v, want the 503", err)
	}
}

func TestInsecureSkipVerifyAcceptsSelfSignedCertificate(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "", s3test.BucketOptions{})
	var none atomic.Int32
	cfg := Config{Bucket: bucket, Endpoint: frontend(t, srv, true, &none), AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Retries: -1}
	if _, err := New(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("New on a self-signed certificate: err = %v, want a certificate error", err)
	}
	cfg.InsecureSkipVerify = true
	b, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New with InsecureSkipVerify: %v", err)
	}
	if err := b.Put(context.Background(), backend.Handle{Kind: backend.Marker}, []byte("custody-vault")); err != nil {
		t.Errorf("Put over TLS: %v", err)
	}
}

func TestGetDetectsDamagedObject(t *testing.T) {
	srv := s3test.Start(t)
	if srv.DataDir == "" {
		t.Skipf("%s keeps objects in its own format", srv.Kind)
	}
	bucket := srv.Bucket(t, "", s3test.BucketOptions{})
	b := open(t, srv, bucket, "")
	ctx := context.Background()
	h := backend.Handle{Kind: backend.Index, Name: "i1"}
	if err := b.Put(ctx, h, []byte("a sealed index")); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(srv.DataDir, bucket, filepath.FromSlash(b.key(h))), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("A"), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// The server sends the SHA-256 it stored at upload; the SDK checks it.
	if got, err := b.Get(ctx, h); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("Get of a damaged object = %q, %v; want a checksum error", got, err)
	}
}

// resettingFrontend proxies to srv but resets the connection of every PUT
// without an answer: what a client sees when a server refuses a large
// conditional write (412) before reading its body and closes the rest.
func resettingFrontend(t *testing.T, srv *s3test.Server) string {
	target, err := url.Parse(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	fe := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut {
			proxy.ServeHTTP(w, r)
			return
		}
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		if tcp, ok := conn.(*net.TCPConn); ok {
			tcp.SetLinger(0) // close with a reset
		}
		conn.Close()
	}))
	t.Cleanup(fe.Close)
	return fe.URL
}

func TestPutWhoseRefusalWasLostToAResetIsErrExistsWhenTheObjectIsThere(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "", s3test.BucketOptions{})
	ctx := context.Background()
	b, err := New(ctx, Config{Bucket: bucket, Endpoint: resettingFrontend(t, srv), AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Retries: 1})
	if err != nil {
		t.Fatal(err)
	}
	there := backend.Handle{Kind: backend.Packs, Name: "aa11"}
	if _, err := srv.Client(t).PutObject(ctx, &s3api.PutObjectInput{
		Bucket: &bucket, Key: aws.String(b.key(there)), Body: strings.NewReader("landed before"),
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, there, []byte("landed before")); !errors.Is(err, backend.ErrExists) {
		t.Errorf("Put of an object that is there, every answer lost: err = %v, want ErrExists", err)
	}
	missing := backend.Handle{Kind: backend.Packs, Name: "bb22"}
	if err := b.Put(ctx, missing, []byte("never landed")); err == nil || errors.Is(err, backend.ErrExists) {
		t.Errorf("Put of an object that is not there, every answer lost: err = %v, want the network error", err)
	}
}
