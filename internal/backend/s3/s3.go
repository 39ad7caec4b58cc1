// Package s3 stores a vault's objects in an S3 bucket (AWS or any
// S3-compatible server) through aws-sdk-go-v2.
//
// Layout, relative to the configured prefix, is the local backend's, so a
// vault directory copied into a bucket (aws s3 sync, rclone) is a valid S3
// vault and back:
//
//	custody-vault          the Marker
//	config                 the Config
//	data/<ab>/<abcdef...>  Packs, under the first two characters of the name
//	<kind>/<name>          every other kind
//
// Objects are write-once on the server, not by a check beforehand: every
// upload is conditional (If-None-Match: *), so of several concurrent
// writers exactly one wins. Servers that do not support conditional writes
// (AWS has since 2024; versitygw and MinIO do) are refused with an error
// rather than risk an overwrite. Every upload carries a SHA-256 checksum
// that the server verifies; objects larger than one part (32 MiB) go as parallel
// multipart uploads with a SHA-256 checksum per part.
package s3

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/custodyhq/custody/internal/backend"
)

// DefaultRetries is how often a failed request (5xx, throttling, timeout,
// broken connection) is retried, with exponential backoff, when
// Config.Retries is 0.
const DefaultRetries = 5

const (
	// partSize is the size of each part of a multipart upload; objects
	// larger than one part are uploaded in parts. Packs (about 16 MiB) go
	// in one request, which measured a fifth faster to versitygw than two
	// parts. S3 wants at least 5 MiB for all but the last part, and allows
	// 10,000 parts (312 GiB here).
	partSize = 32 << 20
	// uploadConcurrency bounds the parts of one object in flight at once.
	uploadConcurrency = 4
)

// Config says where the vault lives and how to reach it.
type Config struct {
	Bucket string
	Prefix string // folder inside the bucket, "" for the top

	// Endpoint is an S3-compatible server's URL (https://host:port); empty
	// for AWS itself.
	Endpoint string
	// Region defaults to the AWS configuration's (AWS_REGION, profile), or
	// to us-east-1 when Endpoint is set.
	Region string
	// PathStyle addresses the bucket in the URL path instead of the host
	// name. It is always on when Endpoint is set, as most S3-compatible
	// servers need it.
	PathStyle bool
	// InsecureSkipVerify accepts any TLS certificate: only for a test
	// server with a self-signed one.
	InsecureSkipVerify bool

	// AccessKey and SecretKey, when set, are the credentials. Otherwise the
	// AWS default chain is used: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY,
	// AWS_PROFILE with ~/.aws/config and ~/.aws/credentials, web identity,
	// then the instance's role.
	AccessKey string
	SecretKey string
	// SessionToken goes with a temporary AccessKey.
	SessionToken string

	// Retries is how often a failed request is retried: 0 means
	// DefaultRetries, a negative number none.
	Retries int
}

// Keys are credentials a caller read from its own environment; zero leaves
// the AWS default chain to find them.
type Keys struct {
	AccessKey, SecretKey, SessionToken string
}

// WithKeys returns cfg with k as its credentials when k has an access key.
func (cfg Config) WithKeys(k Keys) Config {
	if k.AccessKey != "" || k.SecretKey != "" {
		cfg.AccessKey, cfg.SecretKey, cfg.SessionToken = k.AccessKey, k.SecretKey, k.SessionToken
	}
	return cfg
}

// ParseURL reads "s3://bucket" or "s3://bucket/prefix/path" into a Config
// with Bucket and Prefix set; the rest is left for flags and environment.
func ParseURL(s string) (Config, error) {
	bad := func(why string) (Config, error) {
		return Config{}, fmt.Errorf("S3 location %q: %s; write it as s3://bucket or s3://bucket/prefix", s, why)
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return bad("not a URL")
	case u.Scheme != "s3":
		return bad("it does not start with s3://")
	case u.Opaque != "":
		return bad("the bucket must follow s3://")
	case u.User != nil:
		return bad("credentials do not belong in the location; use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or a profile")
	case u.Port() != "" || strings.HasSuffix(u.Host, ":"):
		return bad("a port belongs to the endpoint option, not the bucket")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return bad("it may not have a query or fragment")
	}
	cfg := Config{Bucket: u.Host, Prefix: strings.Trim(u.Path, "/")}
	if err := validateBucket(cfg.Bucket); err != nil {
		return Config{}, fmt.Errorf("S3 location %q: %w", s, err)
	}
	if err := validatePrefix(cfg.Prefix); err != nil {
		return Config{}, fmt.Errorf("S3 location %q: %w", s, err)
	}
	return cfg, nil
}

// validateBucket checks the rules all S3 implementations share: 3 to 63
// lower-case letters, digits, dots and hyphens.
func validateBucket(b string) error {
	if len(b) < 3 || len(b) > 63 {
		return fmt.Errorf("bucket name %q must have 3 to 63 characters", b)
	}
	for _, c := range []byte(b) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '-') {
			return fmt.Errorf("bucket name %q may only hold a-z, 0-9, '.' and '-'", b)
		}
	}
	return nil
}

// validatePrefix refuses prefixes whose keys some servers would map to
// other paths (versitygw and MinIO store keys as files).
func validatePrefix(p string) error {
	if p == "" {
		return nil
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("prefix %q may not hold empty, \".\" or \"..\" folders", p)
		}
	}
	return nil
}

// S3 is a backend.Backend on an S3 bucket. It is safe for concurrent use.
type S3 struct {
	client   *s3api.Client
	bucket   string
	prefix   string // "" or ending in "/"
	location string // s3://bucket/prefix, then " at <endpoint>" if not AWS
	endpoint string // "" or " at <endpoint>"
	partSize int64  // tests shrink it

	mu    sync.Mutex
	temps map[*os.File]bool // files handed out by CreateTemp and not yet put
}

var (
	_ backend.Backend     = (*S3)(nil)
	_ backend.FilePutter  = (*S3)(nil)
	_ backend.RangeReader = (*S3)(nil)
)

// New connects to the bucket and checks that it exists and the credentials
// may use it.
func New(ctx context.Context, cfg Config) (*S3, error) {
	if err := validateBucket(cfg.Bucket); err != nil {
		return nil, fmt.Errorf("open S3 vault: %w", err)
	}
	prefix := strings.Trim(cfg.Prefix, "/")
	if err := validatePrefix(prefix); err != nil {
		return nil, fmt.Errorf("open S3 vault: %w", err)
	}
	b := &S3{bucket: cfg.Bucket, partSize: partSize, temps: make(map[*os.File]bool)}
	b.location = "s3://" + cfg.Bucket
	if prefix != "" {
		b.prefix = prefix + "/"
		b.location += "/" + prefix
	}
	if cfg.Endpoint != "" {
		u, err := url.Parse(cfg.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("open %s: the endpoint must be an http:// or https:// URL, such as https://s3.example.com:9000", b.location)
		}
		if u.User != nil {
			return nil, fmt.Errorf("open %s: the endpoint URL may not hold credentials; use the access key options or AWS_ACCESS_KEY_ID", b.location)
		}
		b.endpoint = " at " + u.String()
		b.location += b.endpoint
	}
	awsCfg, err := loadAWSConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", b.location, err)
	}
	if _, err := awsCfg.Credentials.Retrieve(ctx); err != nil {
		return nil, fmt.Errorf("open %s: no usable AWS credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or the access key options: %w", b.location, err)
	}
	b.client = s3api.NewFromConfig(awsCfg, func(o *s3api.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle || cfg.Endpoint != ""
		// Multipart objects carry a checksum of part checksums, which the
		// SDK cannot check on a whole-object read; it would warn each time.
		o.DisableLogOutputChecksumValidationSkipped = true
	})
	if _, err := b.client.HeadBucket(ctx, &s3api.HeadBucketInput{Bucket: &b.bucket}); err != nil {
		if isNotFound(err) {
			return nil, fmt.Errorf("open %s: the bucket %s does not exist; create it (with versioning and Object Lock for offsite copies) or check its name", b.location, b.bucket)
		}
		return nil, fmt.Errorf("open %s: %s%w", b.location, advice(err), err)
	}
	return b, nil
}

func loadAWSConfig(ctx context.Context, cfg Config) (aws.Config, error) {
	attempts := 1 + DefaultRetries
	if cfg.Retries != 0 {
		attempts = 1 + max(cfg.Retries, 0)
	}
	opts := []func(*config.LoadOptions) error{
		config.WithRetryer(func() aws.Retryer {
			r := retry.NewStandard(func(o *retry.StandardOptions) { o.MaxAttempts = attempts })
			// AWS answers 409 to a conditional write that races another
			// one on the same key, and asks the client to retry.
			return retry.AddWithErrorCodes(r, "ConditionalRequestConflict")
		}),
	}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	switch {
	case cfg.AccessKey != "" && cfg.SecretKey != "":
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken)))
	case cfg.AccessKey != "" || cfg.SecretKey != "":
		return aws.Config{}, errors.New("an access key needs its secret key and the other way round; give both or neither")
	}
	if cfg.InsecureSkipVerify {
		opts = append(opts, config.WithHTTPClient(awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
			if tr.TLSClientConfig == nil {
				tr.TLSClientConfig = &tls.Config{}
			}
			tr.TLSClientConfig.InsecureSkipVerify = true
		})))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("read the AWS configuration (AWS_PROFILE, ~/.aws/config): %w", err)
	}
	if awsCfg.Region == "" {
		if cfg.Endpoint == "" {
			return aws.Config{}, errors.New("no AWS region is set; set AWS_REGION or the region option to the bucket's region")
		}
		awsCfg.Region = "us-east-1" // what S3-compatible servers expect unless told otherwise
	}
	return awsCfg, nil
}

// Location names the bucket and prefix, and the endpoint if not AWS.
func (b *S3) Location() string { return b.location }

// Close releases nothing: the client holds only idle connections, which
// time out. It implements backend.Backend.
func (b *S3) Close() error { return nil }

// key is h's object key; h must be valid.
func (b *S3) key(h backend.Handle) string {
	switch h.Kind {
	case backend.Marker:
		return b.prefix + "custody-vault"
	case backend.Config:
		return b.prefix + "config"
	case backend.Packs:
		return b.prefix + string(h.Kind) + "/" + h.Name[:2] + "/" + h.Name
	}
	return b.prefix + string(h.Kind) + "/" + h.Name
}

// url names h's object for messages: s3://bucket/key, and the endpoint.
func (b *S3) url(h backend.Handle) string {
	return "s3://" + b.bucket + "/" + b.key(h) + b.endpoint
}

func begin(ctx context.Context, h backend.Handle) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return h.Validate()
}
