package main_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/custodyhq/custody/internal/backend/s3test"
	"github.com/custodyhq/custody/internal/testkit"
)

// offsiteEnv is a vault with a dataset snapshot and a versitygw whose
// credentials custody gets the way users give them: AWS_ variables.
type offsiteEnv struct {
	*env
	srv *s3test.Server
	cli *s3api.Client
	src string
}

func newOffsiteEnv(t *testing.T) *offsiteEnv {
	t.Helper()
	srv := s3test.Start(t)
	e := newVault(t)
	e.extra = []string{"AWS_ACCESS_KEY_ID=" + srv.AccessKey, "AWS_SECRET_ACCESS_KEY=" + srv.SecretKey, "CUSTODY_S3_ENDPOINT=" + srv.Endpoint,
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null"}
	o := &offsiteEnv{env: e, srv: srv, cli: srv.Client(t), src: filepath.Join(t.TempDir(), "raw")}
	makeDataset(t, newRand(t), o.src, 3, 3<<20, 5, 100<<10)
	e.snapshot(o.src)
	return o
}

type pushJSON struct {
	Local    int   `json:"local_objects"`
	Uploaded int   `json:"uploaded"`
	Adopted  int   `json:"adopted"`
	Extended int   `json:"retention_extended"`
	Bytes    int64 `json:"bytes_uploaded"`
}

func (o *offsiteEnv) push(name string) pushJSON {
	o.t.Helper()
	var out map[string]pushJSON
	o.okJSON(&out, "offsite", "push", name)
	return out[name]
}

// versions lists every object version and delete marker under prefix.
func (o *offsiteEnv) versions(bucket, prefix string) (vs []types.ObjectVersion, markers []types.DeleteMarkerEntry) {
	o.t.Helper()
	p := s3api.NewListObjectVersionsPaginator(o.cli, &s3api.ListObjectVersionsInput{Bucket: &bucket, Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			o.t.Fatal(err)
		}
		vs = append(vs, page.Versions...)
		markers = append(markers, page.DeleteMarkers...)
	}
	return vs, markers
}

func TestOffsitePushLocksEverythingAndAttackersCannotUndoIt(t *testing.T) {
	t.Parallel()
	o := newOffsiteEnv(t)
	bucket := o.srv.Bucket(t, "", s3test.BucketOptions{Versioning: true, ObjectLock: true})
	o.ok("offsite", "add", "dr", "s3://"+bucket+"/vault", "--lock-mode", "compliance", "--lock-days", "1")

	first := o.push("dr")
	if first.Uploaded == 0 || first.Uploaded != first.Local || first.Adopted != 0 {
		t.Fatalf("first push: %+v", first)
	}
	// Nothing new but the checkpoint the last push's own audit entry
	// signed into the vault as it exited.
	again := o.push("dr")
	if again.Uploaded > 1 || again.Bytes > 1024 || again.Local != first.Local+1 {
		t.Fatalf("a push with nothing new uploaded: %+v (first: %+v)", again, first)
	}
	testkit.WriteFile(t, filepath.Join(o.src, "new.txt"), []byte("a new file"))
	o.snapshot(o.src)
	third := o.push("dr")
	if third.Uploaded == 0 || third.Uploaded > 6 {
		t.Fatalf("incremental push after a small change: %+v", third)
	}
	var st []struct {
		Pending int `json:"pending_objects"`
		Pushed  int `json:"pushed_objects"`
		Locked  int `json:"objects_retained"`
	}
	o.okJSON(&st, "offsite", "status", "dr")
	// Pending: the checkpoint the last push signed as it exited.
	if len(st) != 1 || st[0].Pending != 1 || st[0].Pushed != third.Local || st[0].Locked != third.Local {
		t.Fatalf("status: %+v (the push saw %d objects)", st, third.Local)
	}
	o.ok("offsite", "audit", "dr")

	// Every object, metadata and format objects included, is locked, and
	// the push credentials can neither delete nor overwrite any of it.
	vs, _ := o.versions(bucket, "vault/")
	if len(vs) != third.Local {
		t.Fatalf("%d object versions in the bucket, %d objects in the vault", len(vs), third.Local)
	}
	ctx := context.Background()
	for _, v := range vs {
		r, err := o.cli.GetObjectRetention(ctx, &s3api.GetObjectRetentionInput{Bucket: &bucket, Key: v.Key, VersionId: v.VersionId})
		if err != nil || r.Retention == nil || r.Retention.Mode != types.ObjectLockRetentionModeCompliance || !aws.ToTime(r.Retention.RetainUntilDate).After(time.Now().Add(23*time.Hour)) {
			t.Fatalf("%s is not locked for a day: %+v %v", aws.ToString(v.Key), r, err)
		}
		if _, err := o.cli.DeleteObject(ctx, &s3api.DeleteObjectInput{Bucket: &bucket, Key: v.Key, VersionId: v.VersionId}); err == nil {
			t.Fatalf("deleting locked %s succeeded", aws.ToString(v.Key))
		}
	}
	// An overwrite only adds a version, which the audit reports; the
	// locked original is still there.
	victim := vs[0].Key
	if _, err := o.cli.PutObject(ctx, &s3api.PutObjectInput{Bucket: &bucket, Key: victim, Body: bytes.NewReader([]byte("ransom"))}); err != nil {
		t.Fatalf("overwrite: %v", err)
	}
	r := o.fails(1, []string{"tampering"}, "offsite", "audit", "dr")
	if !strings.Contains(r.stdout, "overwritten") && !strings.Contains(strings.ToLower(r.stdout), "overwrit") {
		t.Fatalf("audit does not report the overwrite:\n%s", r)
	}

	// An independent client, Debian's awscli, reads the same retention.
	if aws, err := exec.LookPath("/usr/bin/aws"); err == nil {
		cmd := exec.Command(aws, "--endpoint-url", o.srv.Endpoint, "s3api", "get-object-retention", "--bucket", bucket, "--key", *vs[1].Key, "--version-id", *vs[1].VersionId)
		cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+o.srv.AccessKey, "AWS_SECRET_ACCESS_KEY="+o.srv.SecretKey, "AWS_DEFAULT_REGION=us-east-1", "AWS_CONFIG_FILE=/dev/null")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "COMPLIANCE") {
			t.Fatalf("aws s3api get-object-retention: %v\n%s", err, out)
		}
	} else if os.Getenv("CI") != "" {
		t.Fatal("awscli is missing: .ci/run installs it")
	}
}

func TestOffsitePushRefusesUnsafeBucketsAndAClosedGate(t *testing.T) {
	t.Parallel()
	o := newOffsiteEnv(t)
	plain := o.srv.Bucket(t, "", s3test.BucketOptions{})
	o.fails(1, []string{"versioning is not enabled", "put-bucket-versioning"}, "offsite", "add", "p", "s3://"+plain+"/v")
	versioned := o.srv.Bucket(t, "", s3test.BucketOptions{Versioning: true})
	o.fails(1, []string{"no Object Lock"}, "offsite", "add", "l", "s3://"+versioned+"/v", "--lock-mode", "governance", "--lock-days", "3")
	o.ok("offsite", "add", "v", "s3://"+versioned+"/v")
	var gate struct {
		ID string `json:"id"`
	}
	o.okJSON(&gate, "gate", "close", "--reason", "incident 9")
	o.fails(1, []string{"offsite push refused", gate.ID}, "offsite", "push", "v")
	if vs, _ := o.versions(versioned, "v/"); len(vs) != 0 {
		t.Fatalf("a refused push wrote %d objects", len(vs))
	}
	o.ok("gate", "open", gate.ID)
	o.push("v")
}

func TestPointInTimeRestoreRecoversDeletedAndOverwrittenObjects(t *testing.T) {
	t.Parallel()
	o := newOffsiteEnv(t)
	bucket := o.srv.Bucket(t, "", s3test.BucketOptions{Versioning: true}) // unlocked: the attacker succeeds
	o.ok("offsite", "add", "dr", "s3://"+bucket+"/vault")
	o.push("dr")
	version := o.log()[0].Version
	time.Sleep(1100 * time.Millisecond) // S3 times have one-second resolution
	before := time.Now().UTC()
	time.Sleep(1100 * time.Millisecond)

	// The attacker deletes every object (delete markers) and overwrites
	// the config with garbage.
	ctx := context.Background()
	vs, _ := o.versions(bucket, "vault/")
	for _, v := range vs {
		if _, err := o.cli.DeleteObject(ctx, &s3api.DeleteObjectInput{Bucket: &bucket, Key: v.Key}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := o.cli.PutObject(ctx, &s3api.PutObjectInput{Bucket: &bucket, Key: aws.String("vault/config"), Body: bytes.NewReader([]byte("garbage"))}); err != nil {
		t.Fatal(err)
	}
	o.srv.FixVersionTimes(t, bucket) // versitygw v1.8.0 misdates old versions
	target := filepath.Join(t.TempDir(), "now")
	o.fails(1, nil, "restore", "--offsite", "dr", version, "--target", target)

	restored := filepath.Join(t.TempDir(), "then")
	o.ok("restore", "--offsite", "dr", "--as-of", before.Format(time.RFC3339), version, "--target", restored)
	compareTrees(t, o.src, restored)

	// The vault itself gone, the bucket alone is enough.
	if err := os.RemoveAll(o.vault); err != nil {
		t.Fatal(err)
	}
	o.extra = append(o.extra, "CUSTODY_CATALOG="+filepath.Join(t.TempDir(), "c.db"))
	again := filepath.Join(t.TempDir(), "again")
	o.runEnvOK([]string{"CUSTODY_VAULT=s3://" + bucket + "/vault"}, "restore", "--as-of", before.Format(time.RFC3339), version, "--target", again)
	compareTrees(t, o.src, again)
}

func TestKilledPushResumesWithoutUploadingAgain(t *testing.T) {
	t.Parallel()
	o := newOffsiteEnv(t)
	// Enough packs that a push is still running when it is killed.
	makeDataset(t, newRand(t), filepath.Join(o.src, "big"), 12, 8<<20, 0, 0)
	o.snapshot(o.src)
	bucket := o.srv.Bucket(t, "", s3test.BucketOptions{Versioning: true, ObjectLock: true})
	o.ok("offsite", "add", "dr", "s3://"+bucket+"/vault", "--lock-mode", "governance", "--lock-days", "1")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := o.command(ctx, nil, "offsite", "push", "dr", "--workers", "1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for { // wait for the first objects to land, then kill -9
		if vs, _ := o.versions(bucket, "vault/"); len(vs) >= 2 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the push never uploaded anything")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Kill()
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Skipf("the push finished before it could be killed (%v); nothing to resume", err)
	}
	landed, _ := o.versions(bucket, "vault/")

	res := o.push("dr")
	// What landed before the kill is skipped (recorded) or adopted (landed
	// but not yet recorded), never sent again.
	if res.Uploaded > res.Local-len(landed) {
		t.Fatalf("resumed push uploaded %d of %d objects, but %d had landed before the kill", res.Uploaded, res.Local, len(landed))
	}
	vs, _ := o.versions(bucket, "vault/")
	if len(vs) != res.Local {
		t.Fatalf("%d object versions for %d objects: something was uploaded twice", len(vs), res.Local)
	}
	o.ok("offsite", "audit", "dr")
}

func TestLockRetainsEveryObjectAVersionNeeds(t *testing.T) {
	t.Parallel()
	o := newOffsiteEnv(t)
	bucket := o.srv.Bucket(t, "", s3test.BucketOptions{Versioning: true, ObjectLock: true})
	o.ok("offsite", "add", "dr", "s3://"+bucket+"/vault") // no lock by default
	version := o.log()[0].Version
	o.fails(1, []string{"not on offsite dr yet", "offsite push"}, "lock", version, "--offsite", "dr", "--days", "2")
	o.push("dr")
	o.ok("lock", version, "--offsite", "dr", "--days", "3", "--mode", "governance", "--legal-hold")
	o.ok("lock", version, "--offsite", "dr", "--days", "1") // never shortens

	ctx := context.Background()
	vs, _ := o.versions(bucket, "vault/")
	locked := 0
	for _, v := range vs {
		key := aws.ToString(v.Key)
		r, err := o.cli.GetObjectRetention(ctx, &s3api.GetObjectRetentionInput{Bucket: &bucket, Key: v.Key, VersionId: v.VersionId})
		retained := err == nil && r.Retention != nil && aws.ToTime(r.Retention.RetainUntilDate).After(time.Now().Add(71*time.Hour))
		if strings.HasPrefix(key, "vault/checkpoints/") {
			continue // the audit trail's, not the version's
		}
		if !retained {
			t.Errorf("%s is not retained for 3 days: %+v %v", key, r, err)
			continue
		}
		h, err := o.cli.GetObjectLegalHold(ctx, &s3api.GetObjectLegalHoldInput{Bucket: &bucket, Key: v.Key, VersionId: v.VersionId})
		if err != nil || h.LegalHold == nil || h.LegalHold.Status != types.ObjectLockLegalHoldStatusOn {
			t.Errorf("%s has no legal hold: %v", key, err)
		}
		locked++
	}
	if locked < 5 { // marker, config, key, index, version, packs
		t.Fatalf("only %d objects locked", locked)
	}
	var rows []auditRow
	o.okJSON(&rows, "audit", "log", "--kind", "offsite.lock")
	if len(rows) != 3 || !strings.HasPrefix(rows[0].Outcome, "failed") || rows[1].Outcome != "ok" {
		t.Fatalf("offsite.lock audit entries: %+v", rows)
	}
}

func TestVaultDirectlyOnS3(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "", s3test.BucketOptions{Versioning: true})
	e := newEnv(t)
	e.vault = "s3://" + bucket + "/team/vault"
	e.extra = []string{"AWS_ACCESS_KEY_ID=" + srv.AccessKey, "AWS_SECRET_ACCESS_KEY=" + srv.SecretKey, "CUSTODY_S3_ENDPOINT=" + srv.Endpoint,
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "XDG_DATA_HOME=" + t.TempDir()}
	e.ok("init")
	e.fails(1, []string{"already a custody vault"}, "init")
	src := filepath.Join(t.TempDir(), "raw")
	makeDataset(t, newRand(t), src, 2, 20<<20, 3, 50<<10) // packs larger than one upload part
	v := e.snapshot(src)
	compareTrees(t, src, e.restore(v.Version))
	e.checkClean("--read-data")
	e.ok("audit", "verify")
	// Wrong credentials: a clear error naming the way out, and no secret.
	r := e.runEnv([]string{"AWS_SECRET_ACCESS_KEY=wrong-secret-value"}, "log")
	if r.code != 1 || strings.Contains(r.stderr, "wrong-secret-value") || !strings.Contains(r.stderr, "check the access key") {
		t.Fatalf("wrong secret: want exit 1 with advice and no secret, got\n%s", r)
	}
}
