package s3test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// TestObjectLockKeepsALockedVersion proves the server is a real S3 with
// Object Lock: a version under COMPLIANCE retention cannot be deleted, and
// overwriting the key adds a version instead of replacing the locked one.
func TestObjectLockKeepsALockedVersion(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	ctx := t.Context()
	bucket := s.Bucket(t, "", BucketOptions{Versioning: true, ObjectLock: true})
	key := aws.String("checkpoints/1")

	v, err := c.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: &bucket})
	if err != nil || v.Status != types.BucketVersioningStatusEnabled {
		t.Fatalf("bucket versioning = %q, %v; want Enabled", v.Status, err)
	}
	lock, err := c.GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: &bucket})
	if err != nil || lock.ObjectLockConfiguration.ObjectLockEnabled != types.ObjectLockEnabledEnabled {
		t.Fatalf("bucket Object Lock configuration: %+v, %v; want Enabled", lock.ObjectLockConfiguration, err)
	}

	until := time.Now().Add(24 * time.Hour).UTC().Truncate(time.Second)
	first, err := c.PutObject(ctx, &s3.PutObjectInput{
		Bucket:                    &bucket,
		Key:                       key,
		Body:                      strings.NewReader("signed checkpoint"),
		ObjectLockMode:            types.ObjectLockModeCompliance,
		ObjectLockRetainUntilDate: &until,
		ChecksumAlgorithm:         types.ChecksumAlgorithmSha256,
	})
	if err != nil {
		t.Fatalf("put with retention: %v", err)
	}
	if first.VersionId == nil || *first.VersionId == "" {
		t.Fatal("put into a versioned bucket returned no version id")
	}
	ret, err := c.GetObjectRetention(ctx, &s3.GetObjectRetentionInput{Bucket: &bucket, Key: key, VersionId: first.VersionId})
	if err != nil || ret.Retention.Mode != types.ObjectLockRetentionModeCompliance || !ret.Retention.RetainUntilDate.Equal(until) {
		t.Fatalf("retention = %+v, %v; want COMPLIANCE until %v", ret.Retention, err, until)
	}

	_, err = c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &bucket, Key: key, VersionId: first.VersionId})
	if !isAccessDenied(err) {
		t.Errorf("deleting the locked version: err = %v, want AccessDenied", err)
	}
	_, err = c.DeleteObject(ctx, &s3.DeleteObjectInput{
		Bucket: &bucket, Key: key, VersionId: first.VersionId, BypassGovernanceRetention: aws.Bool(true),
	})
	if !isAccessDenied(err) {
		t.Errorf("deleting the locked version with governance bypass: err = %v, want AccessDenied (COMPLIANCE has no bypass)", err)
	}
	shorter := time.Now().Add(time.Hour)
	_, err = c.PutObjectRetention(ctx, &s3.PutObjectRetentionInput{
		Bucket: &bucket, Key: key, VersionId: first.VersionId,
		Retention: &types.ObjectLockRetention{Mode: types.ObjectLockRetentionModeCompliance, RetainUntilDate: &shorter},
	})
	if err == nil {
		t.Error("shortening COMPLIANCE retention succeeded")
	}

	second, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: key, Body: strings.NewReader("forged checkpoint")})
	if err != nil {
		t.Fatalf("overwrite: %v", err)
	}
	if second.VersionId == nil || *second.VersionId == *first.VersionId {
		t.Fatalf("overwrite returned version %v, want a new one beside %s", second.VersionId, *first.VersionId)
	}
	if got := read(t, c, bucket, key, nil); got != "forged checkpoint" {
		t.Errorf("latest version = %q", got)
	}
	if got := read(t, c, bucket, key, first.VersionId); got != "signed checkpoint" {
		t.Errorf("locked version = %q, want the original", got)
	}

	// A delete without a version id only stacks a delete marker on top.
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &bucket, Key: key}); err != nil {
		t.Fatalf("delete without version id: %v", err)
	}
	versions, err := c.ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: &bucket})
	if err != nil {
		t.Fatal(err)
	}
	if len(versions.Versions) != 2 || len(versions.DeleteMarkers) != 1 {
		t.Errorf("after overwrite and delete: %d versions and %d delete markers, want 2 and 1",
			len(versions.Versions), len(versions.DeleteMarkers))
	}
	if got := read(t, c, bucket, key, first.VersionId); got != "signed checkpoint" {
		t.Errorf("locked version after delete = %q, want the original", got)
	}
}

func read(t *testing.T, c *s3.Client, bucket string, key, version *string) string {
	t.Helper()
	out, err := c.GetObject(t.Context(), &s3.GetObjectInput{Bucket: &bucket, Key: key, VersionId: version})
	if err != nil {
		t.Fatalf("get %s (version %v): %v", *key, aws.ToString(version), err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func isAccessDenied(err error) bool {
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode() == "AccessDenied"
}

func TestBucketWithoutVersioningKeepsOneVersion(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	ctx := context.Background()
	bucket := s.Bucket(t, "plain-bucket", BucketOptions{})
	if bucket != "plain-bucket" {
		t.Fatalf("Bucket returned %q", bucket)
	}
	for _, body := range []string{"one", "two"} {
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String("k"), Body: strings.NewReader(body)}); err != nil {
			t.Fatal(err)
		}
	}
	if got := read(t, c, bucket, aws.String("k"), nil); got != "two" {
		t.Errorf("get = %q, want the overwrite", got)
	}
}
