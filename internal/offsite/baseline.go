package offsite

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	s3api "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/custodyhq/custody/internal/backend/s3"
)

// Baseline is the bucket's security-relevant configuration, recorded when
// the offsite is added (JSON in catalog.Offsite.Baseline) and compared by
// every audit. Configurations are kept as hashes: the audit needs to know
// that one changed, and shows the new one from the bucket itself.
type Baseline struct {
	Versioning string `json:"versioning"`  // "Enabled", "Suspended" or ""
	ObjectLock string `json:"object_lock"` // SHA-256 (hex) of the canonical Object Lock configuration, "" when none
	Policy     string `json:"policy"`      // SHA-256 of the canonical bucket policy, "" when none
	Lifecycle  string `json:"lifecycle"`   // SHA-256 of the canonical lifecycle configuration, "" when none
}

// bucketConfig is the configuration as read, in canonical JSON ("" for
// none), before it is hashed into a Baseline.
type bucketConfig struct {
	Versioning string
	ObjectLock string
	Policy     string
	Lifecycle  string
}

func (c bucketConfig) baseline() Baseline {
	return Baseline{
		Versioning: c.Versioning,
		ObjectLock: hashOf(c.ObjectLock),
		Policy:     hashOf(c.Policy),
		Lifecycle:  hashOf(c.Lifecycle),
	}
}

// hashOf is the hex SHA-256 of s, or "" for "" (nothing configured).
func hashOf(s string) string {
	if s == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// TakeBaseline reads the bucket's versioning, Object Lock configuration,
// policy and lifecycle rules as they are now.
func TakeBaseline(ctx context.Context, t *Target) (Baseline, error) {
	c, err := readBucketConfig(ctx, t)
	if err != nil {
		return Baseline{}, err
	}
	return c.baseline(), nil
}

// Encode is the baseline as stored in the catalog.
func (b Baseline) Encode() []byte {
	data, err := json.Marshal(b)
	if err != nil {
		panic(err) // four strings always marshal
	}
	return data
}

// errNoBaseline is DecodeBaseline's answer for an offsite recorded without
// one; Audit then checks only that versioning is not suspended.
var errNoBaseline = errors.New("no bucket baseline recorded")

// DecodeBaseline reads a baseline written by Encode. It refuses unknown
// fields and malformed values rather than compare against half a baseline.
func DecodeBaseline(data []byte) (Baseline, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return Baseline{}, errNoBaseline
	}
	if data[0] != '{' {
		return Baseline{}, errors.New("bucket baseline: not a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var b Baseline
	if err := dec.Decode(&b); err != nil {
		return Baseline{}, fmt.Errorf("bucket baseline: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Baseline{}, errors.New("bucket baseline: data after the JSON object")
	}
	switch b.Versioning {
	case "", "Enabled", "Suspended":
	default:
		return Baseline{}, fmt.Errorf("bucket baseline: versioning %q is not Enabled, Suspended or empty", b.Versioning)
	}
	for what, h := range map[string]string{"object_lock": b.ObjectLock, "policy": b.Policy, "lifecycle": b.Lifecycle} {
		if h == "" {
			continue
		}
		if _, err := hex.DecodeString(h); err != nil || len(h) != 2*sha256.Size {
			return Baseline{}, fmt.Errorf("bucket baseline: %s %q is not a hex SHA-256", what, h)
		}
	}
	return b, nil
}

// auditBucket compares the bucket's configuration with the baseline. An
// offsite recorded without a baseline is only checked for suspended
// versioning.
func auditBucket(ctx context.Context, t *Target) ([]Finding, error) {
	base, err := DecodeBaseline(t.Rec.Baseline)
	known := err == nil
	if err != nil && !errors.Is(err, errNoBaseline) {
		return nil, fmt.Errorf("offsite %s: %w", t.Rec.Name, err)
	}
	now, err := readBucketConfig(ctx, t)
	if err != nil {
		return nil, err
	}
	var fs []Finding
	if now.Versioning != "Enabled" && (base.Versioning == "Enabled" || !known && now.Versioning == "Suspended") {
		fs = append(fs, Finding{Kind: VersioningSuspended, Detail: fmt.Sprintf(
			"bucket versioning is %s, expected Enabled: overwrites and deletes now destroy data instead of keeping the old version; enable it again (aws s3api put-bucket-versioning --bucket %s --versioning-configuration Status=Enabled) and find out who suspended it",
			orNone(now.Versioning, "off"), t.S3.Bucket())})
	}
	if !known {
		return fs, nil
	}
	nowHashes := now.baseline()
	for _, c := range []struct {
		kind, what, was, now, body, why string // was, now: hashes; body: the configuration now
	}{
		{ObjectLockChanged, "the Object Lock configuration", base.ObjectLock, nowHashes.ObjectLock, now.ObjectLock,
			"only someone allowed to configure the bucket can change it, and its default retention applies to every upload"},
		{PolicyChanged, "the bucket policy", base.Policy, nowHashes.Policy, now.Policy,
			"a policy can grant others the right to delete versions or shorten retention"},
		{LifecycleChanged, "the lifecycle rules", base.Lifecycle, nowHashes.Lifecycle, now.Lifecycle,
			"an expiration rule deletes old versions, and current ones once unlocked"},
	} {
		if c.was == c.now {
			continue
		}
		change := "now " + abbreviate(c.body, 300)
		switch {
		case c.was == "":
			change = "there was none, " + change
		case c.now == "":
			change = "it was removed"
		}
		fs = append(fs, Finding{Kind: c.kind, Detail: fmt.Sprintf(
			"%s changed since the offsite was added: %s; review it: %s", c.what, change, c.why)})
	}
	return fs, nil
}

// readBucketConfig reads the four configurations. A server's "none
// configured" answer, or its "not implemented" (versitygw has no
// lifecycle), reads as "".
func readBucketConfig(ctx context.Context, t *Target) (bucketConfig, error) {
	c, bucket := t.S3.Client(), t.S3.Bucket()
	var cfg bucketConfig
	fail := func(what string, err error) (bucketConfig, error) {
		return bucketConfig{}, fmt.Errorf("offsite %s: read the bucket's %s: %w", t.Rec.Name, what, err)
	}

	ver, err := c.GetBucketVersioning(ctx, &s3api.GetBucketVersioningInput{Bucket: &bucket})
	switch {
	case err == nil:
		cfg.Versioning = string(ver.Status)
	case !notConfigured(err):
		return fail("versioning", err)
	}

	lock, err := c.GetObjectLockConfiguration(ctx, &s3api.GetObjectLockConfigurationInput{Bucket: &bucket})
	switch {
	case err == nil:
		if cfg.ObjectLock, err = canonicalJSON(lock.ObjectLockConfiguration); err != nil {
			return fail("Object Lock configuration", err)
		}
	case !notConfigured(err):
		return fail("Object Lock configuration", err)
	}

	pol, err := c.GetBucketPolicy(ctx, &s3api.GetBucketPolicyInput{Bucket: &bucket})
	switch {
	case err == nil:
		cfg.Policy = canonicalPolicy(pol.Policy)
	case !notConfigured(err):
		return fail("policy", err)
	}

	lc, err := c.GetBucketLifecycleConfiguration(ctx, &s3api.GetBucketLifecycleConfigurationInput{Bucket: &bucket})
	switch {
	case err == nil:
		if cfg.Lifecycle, err = canonicalRules(lc.Rules); err != nil {
			return fail("lifecycle configuration", err)
		}
	case !notConfigured(err):
		return fail("lifecycle configuration", err)
	}
	return cfg, nil
}

// notConfigured reports S3's answers for a configuration that was never
// set (AWS and versitygw use these codes), or a feature the server lacks.
func notConfigured(err error) bool {
	switch s3.APICode(err) {
	case "NoSuchBucketPolicy", "NoSuchLifecycleConfiguration", "ObjectLockConfigurationNotFoundError", "NotImplemented":
		return true
	}
	return false
}

// canonicalJSON is v as JSON with object keys sorted and null, empty and
// "" values left out, or "" if nothing is left. Equal configurations then
// give equal bytes whatever order a server lists fields in, and an SDK
// upgrade that adds (unset) fields does not change them.
func canonicalJSON(v any) (string, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	tree, err := decodeJSON(raw)
	if err != nil {
		return "", err
	}
	tree = prune(tree)
	if tree == nil {
		return "", nil
	}
	out, err := json.Marshal(tree) // maps marshal with sorted keys
	return string(out), err
}

// canonicalRules is the lifecycle rules in canonical JSON, sorted, since
// their order has no meaning.
func canonicalRules[T any](rules []T) (string, error) {
	var each []string
	for _, r := range rules {
		s, err := canonicalJSON(r)
		if err != nil {
			return "", err
		}
		if s != "" {
			each = append(each, s)
		}
	}
	if len(each) == 0 {
		return "", nil
	}
	slices.Sort(each)
	return "[" + strings.Join(each, ",") + "]", nil
}

// canonicalPolicy is a policy document with sorted keys and no spacing.
// Nothing is pruned: in a policy an empty string can be a condition.
// A document that is not JSON is kept as it is.
func canonicalPolicy(p *string) string {
	if p == nil || strings.TrimSpace(*p) == "" {
		return ""
	}
	tree, err := decodeJSON([]byte(*p))
	if err != nil {
		return *p
	}
	out, err := json.Marshal(tree)
	if err != nil {
		return *p
	}
	return string(out)
}

// decodeJSON parses data keeping numbers as written.
func decodeJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON value")
	}
	return tree, nil
}

// prune drops nulls, "" and emptied objects and arrays from a decoded JSON
// tree, returning nil if nothing is left.
func prune(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if p := prune(e); p == nil {
				delete(v, k)
			} else {
				v[k] = p
			}
		}
		if len(v) == 0 {
			return nil
		}
		return v
	case []any:
		out := v[:0]
		for _, e := range v {
			if p := prune(e); p != nil {
				out = append(out, p)
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	case string:
		if v == "" {
			return nil
		}
	}
	return v
}
