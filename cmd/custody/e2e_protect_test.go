package main_test

// The daemon's tests: `custody protect` and `custody serve` run in the
// background as a user runs them, and the tests talk to them the way
// clients do: over HTTPS, pinning the certificate fingerprint they print.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/custodyhq/custody/internal/backend/s3test"
	"github.com/custodyhq/custody/internal/testkit"
)

func TestProtectFromAFreshMachine(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	src := filepath.Join(t.TempDir(), "notes")
	makeDataset(t, newRand(t), src, 2, 64<<10, 3, 8<<10)
	environ := freshEnviron(t, "CUSTODY_DATA_DIR="+data)
	args := []string{"protect", src, "--address", "127.0.0.1:0", "--snapshot-quiet", "1s", "--snapshot-every", "0"}
	d := startDaemon(t, environ, args...)
	admin := d.adminToken
	if !strings.HasPrefix(admin, "cst_") {
		t.Fatalf("the first start printed no admin token\n%s", d.output())
	}

	// No passphrase was given: one was made, readable by its owner only,
	// and the vault is in the data directory.
	passFile, vault := filepath.Join(data, "passphrase"), filepath.Join(data, "vault")
	if fi, err := os.Stat(passFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the made passphrase %s: %v, want mode 0600 (%v)", passFile, fi, err)
	}
	if !strings.Contains(d.stdout.String(), passFile) {
		t.Errorf("stdout does not say where the made passphrase is\n%s", d.output())
	}
	if _, err := os.Stat(filepath.Join(vault, "config")); err != nil {
		t.Fatalf("no vault in the data directory: %v", err)
	}

	// The baseline, then a version once a change has been quiet for 1 s.
	ds := d.datasets(admin)
	if len(ds) != 1 || ds[0].Name != "notes" || ds[0].Path != src || ds[0].Versions != 1 {
		t.Fatalf("datasets after the first start: %+v, want notes at %s with its baseline", ds, src)
	}
	changed := filepath.Join(src, "text", "shard-000.csv")
	appendTo(t, changed, "one more row\n")
	var vs apiVersions
	eventually(t, 30*time.Second, "a version after the change went quiet", func() (bool, string) {
		vs = d.versions(admin, "notes")
		return vs.Total == 2, fmt.Sprintf("%+v", vs)
	})
	if len(vs.Versions) != 2 || vs.Versions[0].Parent != vs.Versions[1].ID || !strings.Contains(vs.Versions[0].Message, "quiet") {
		t.Errorf("versions: %+v, want the quiet one after the baseline", vs)
	}

	// The watcher put the change in the ledger with who made it: this
	// process, as root.
	var mods []apiAuditEntry
	eventually(t, 10*time.Second, "the change in the ledger", func() (bool, string) {
		mods = d.audit(admin, url.Values{"kind": {"file.modify"}, "path": {changed}})
		return len(mods) > 0, fmt.Sprint(len(mods), " entries")
	})
	a := mods[0].Entry.Actor
	if a.UID == nil || *a.UID != uint32(os.Geteuid()) || a.PID != os.Getpid() || mods[0].Entry.Dataset != "notes" {
		t.Errorf("file.modify of %s: %+v, want dataset notes, uid %d, pid %d", changed, mods[0].Entry, os.Geteuid(), os.Getpid())
	}

	// An auditor reads the ledger but no data.
	var made struct {
		Secret string `json:"secret"`
		Token  struct {
			ID   string `json:"id"`
			Role string `json:"role"`
		} `json:"token"`
	}
	if status, b := d.do(http.MethodPost, "/api/v1/tokens", admin, map[string]any{"name": "auditor-1", "role": "auditor"}, &made); status != http.StatusCreated || !strings.HasPrefix(made.Secret, "cst_") {
		t.Fatalf("POST /api/v1/tokens: %d %s", status, b)
	}
	auditor := made.Secret
	if status, b := d.do(http.MethodGet, "/api/v1/datasets", auditor, nil, nil); status != http.StatusForbidden {
		t.Errorf("an auditor listed the datasets: %d %s", status, b)
	}
	d.get("/api/v1/audit?kind=token.create", auditor, nil)

	// Every request is in the ledger, naming its token.
	sentBefore := d.sent[admin]
	searches := 0
	eventually(t, 10*time.Second, "every request in the ledger", func() (bool, string) {
		searches++
		byToken := map[string][]apiAuditEntry{}
		for _, e := range d.audit(admin, url.Values{"kind": {"api.request"}}) {
			byToken[e.Entry.Actor.Token] = append(byToken[e.Entry.Actor.Token], e)
		}
		// This search is recorded once it is answered; the previous ones are in.
		wantAdmin := sentBefore + searches - 1
		saw := fmt.Sprintf("%d entries for admin (want %d), %d for auditor-1 (want 2)", len(byToken["admin"]), wantAdmin, len(byToken["auditor-1"]))
		if len(byToken["admin"]) != wantAdmin || len(byToken["auditor-1"]) != 2 {
			return false, saw
		}
		routes := map[string]string{}
		for _, e := range byToken["auditor-1"] {
			if e.Entry.Detail["token"] != made.Token.ID {
				return false, fmt.Sprintf("auditor entry with token id %q, want %q", e.Entry.Detail["token"], made.Token.ID)
			}
			routes[e.Entry.Detail["route"]] = e.Entry.Outcome + " " + e.Entry.Detail["status"]
		}
		if routes["GET /api/v1/datasets"] != "denied 403" || routes["GET /api/v1/audit"] != "ok 200" {
			return false, fmt.Sprintf("the auditor's requests: %v", routes)
		}
		return true, saw
	})

	d.stop()

	// Run again: the same vault, token and certificate, no new token, and
	// the schedule goes on.
	d2 := startDaemon(t, environ, args...)
	if d2.adminToken != "" || strings.Contains(d2.stdout.String(), "cst_") {
		t.Errorf("the second start printed a secret\n%s", d2.output())
	}
	if d2.fingerprint != d.fingerprint {
		t.Errorf("the certificate changed on restart: %s, was %s", d2.fingerprint, d.fingerprint)
	}
	if ds := d2.datasets(admin); len(ds) != 1 || ds[0].Versions != 2 || ds[0].Latest != vs.Versions[0].ID {
		t.Fatalf("datasets after the restart: %+v, want the 2 versions of before, %s the latest", ds, vs.Versions[0].ID)
	}
	d2.get("/api/v1/audit?kind=snapshot", auditor, nil)
	appendTo(t, changed, "and another\n")
	eventually(t, 30*time.Second, "a version after the restart's change went quiet", func() (bool, string) {
		vs = d2.versions(admin, "notes")
		return vs.Total == 3, fmt.Sprintf("%+v", vs)
	})
	d2.stop()

	r := runWith(t, freshEnviron(t, "CUSTODY_PASSWORD_FILE="+passFile, "CUSTODY_VAULT="+vault), "check", "--read-data")
	if r.code != 0 || !strings.Contains(r.stdout, "no damage found") {
		t.Fatalf("check of the vault protect made:\n%s", r)
	}
}

// gzipLike is n bytes of random data behind a gzip header: big data that
// the guard rightly does not take for ciphertext.
func gzipLike(rng *rand.Rand, n int) []byte {
	b := testkit.RandomBytes(rng.Uint64(), n)
	copy(b, "\x1f\x8b\x08\x00")
	return b
}

func TestProtectSurvivesKill9DuringSnapshotAndPush(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "", s3test.BucketOptions{Versioning: true, ObjectLock: true})
	cli := srv.Client(t)
	e := newEnv(t)
	e.extra = []string{"AWS_ACCESS_KEY_ID=" + srv.AccessKey, "AWS_SECRET_ACCESS_KEY=" + srv.SecretKey, "CUSTODY_S3_ENDPOINT=" + srv.Endpoint,
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "CUSTODY_DATA_DIR=" + t.TempDir()}
	rng := newRand(t)
	src := filepath.Join(t.TempDir(), "train")
	const nBlobs, blobSize = 12, 4 << 20 // 48 MiB: three packs
	blobs := make([]string, nBlobs)
	rewrite := func() {
		for i := range blobs {
			blobs[i] = filepath.Join(src, "shards", fmt.Sprintf("shard-%02d.gz", i))
			testkit.WriteFile(t, blobs[i], gzipLike(rng, blobSize))
		}
	}
	rewrite()
	testkit.WriteFile(t, filepath.Join(src, "labels.csv"), textBytes(rng, 64<<10))
	args := []string{"protect", src, "--address", "127.0.0.1:0", "--snapshot-every", "0", "--snapshot-quiet", "0",
		"--offsite", "s3://" + bucket + "/vault"}
	start := func() *daemonProc { return startDaemon(t, e.environ(nil), args...) }
	bucketVersions := func() int {
		n := 0
		p := s3api.NewListObjectVersionsPaginator(cli, &s3api.ListObjectVersionsInput{Bucket: &bucket, Prefix: aws.String("vault/")})
		for p.HasMorePages() {
			page, err := p.NextPage(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			n += len(page.Versions)
		}
		return n
	}

	d := start()
	admin := d.adminToken
	// The offsite was never pushed to: the schedule pushes at once.
	eventually(t, 60*time.Second, "the first push", func() (bool, string) {
		es := d.audit(admin, url.Values{"kind": {"offsite.push"}})
		for _, e := range es {
			if e.Entry.Outcome == "ok" {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", es)
	})

	// (a) kill -9 while a requested snapshot writes packs.
	rewrite()
	packs := objectCount(t, e.vault, "data")
	job := d.startJob("/api/v1/datasets/train/snapshots", admin)
	killed := d.killDuring("/api/v1/datasets/train/snapshots/"+job.ID, admin, func() bool { return objectCount(t, e.vault, "data") > packs })
	if killed {
		t.Logf("killed the snapshot: data/ holds %d packs (was %d), tmp/ %d files", objectCount(t, e.vault, "data"), packs, objectCount(t, e.vault, "tmp"))
		e.checkClean("--read-data")
	} else {
		d.stop()
	}
	d = start()
	if d.adminToken != "" {
		t.Errorf("the restart printed a new admin token\n%s", d.output())
	}
	if killed {
		// The rewrite the killed snapshot did not save is in no version:
		// the restart catches up.
		eventually(t, time.Minute, "a catch-up version of what the killed snapshot missed", func() (bool, string) {
			vs := d.versions(admin, "train")
			return vs.Total == 2 && strings.Contains(vs.Versions[0].Message, "catch-up"), fmt.Sprintf("%+v", vs)
		})
	}
	job = d.startJob("/api/v1/datasets/train/snapshots", admin)
	job = d.finishedJob("/api/v1/datasets/train/snapshots/"+job.ID, admin, 2*time.Minute)
	var made struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal(job.Result, &made); err != nil || len(made.Version) != 64 {
		t.Fatalf("the snapshot job's result %s: %v", job.Result, err)
	}
	// The baseline, then the catch-up or the snapshot that was not
	// killed, then this one.
	if vs := d.versions(admin, "train"); vs.Total != 3 || vs.Versions[0].ID != made.Version {
		t.Fatalf("versions after the snapshot: %+v, want 3, %s the newest", vs, made.Version)
	}

	// (b) kill -9 while a requested push uploads.
	before := bucketVersions()
	job = d.startJob("/api/v1/offsites/offsite/push", admin)
	killed = d.killDuring("/api/v1/offsites/offsite/push/"+job.ID, admin, func() bool { return bucketVersions() > before })
	landed := bucketVersions()
	if killed {
		t.Logf("killed the push: %d object versions in the bucket (%d before it)", landed, before)
	} else {
		d.stop()
	}
	d = start()
	job = d.startJob("/api/v1/offsites/offsite/push", admin)
	job = d.finishedJob("/api/v1/offsites/offsite/push/"+job.ID, admin, 2*time.Minute)
	var pushed pushJSON
	if err := json.Unmarshal(job.Result, &pushed); err != nil {
		t.Fatalf("the push job's result %s: %v", job.Result, err)
	}
	// What landed before the kill is recorded or adopted, never sent again.
	if pushed.Uploaded > pushed.Local-landed {
		t.Errorf("the push after the kill uploaded %d of %d objects, but %d had landed before", pushed.Uploaded, pushed.Local, landed)
	}
	if n := bucketVersions(); n != pushed.Local {
		t.Errorf("%d object versions in the bucket for %d objects: something was uploaded twice", n, pushed.Local)
	}
	d.stop()

	// Nothing is pending but the checkpoints the ledger signed after the
	// push, and the bucket is as pushed.
	var st []struct {
		Local   int `json:"local_objects"`
		Pushed  int `json:"pushed_objects"`
		Pending int `json:"pending_objects"`
	}
	e.okJSON(&st, "offsite", "status", "offsite")
	if len(st) != 1 || st[0].Pushed < pushed.Local || st[0].Pending != st[0].Local-st[0].Pushed ||
		st[0].Pending > objectCount(t, e.vault, "checkpoints") {
		t.Errorf("offsite status: %+v, after a push of %d objects", st, pushed.Local)
	}
	e.ok("offsite", "audit", "offsite")
	e.checkClean("--read-data")
	compareTrees(t, src, e.restore("latest", "--dataset", "train"))
}

func TestServeFromConfig(t *testing.T) {
	t.Parallel()
	e := newVault(t)
	e.extra = []string{"CUSTODY_DATA_DIR=" + t.TempDir()}
	rng := newRand(t)
	raw, feat := filepath.Join(t.TempDir(), "collect"), filepath.Join(t.TempDir(), "features")
	makeDataset(t, rng, raw, 1, 32<<10, 2, 4<<10)
	makeDataset(t, rng, feat, 1, 32<<10, 2, 4<<10)
	dir := t.TempDir()
	config := filepath.Join(dir, "custody.yaml")
	testkit.WriteFile(t, config, []byte(fmt.Sprintf(`datasets:
  - name: raw-data
    path: %s
    stage: collect
    snapshot: {every: 1h, quiet: 5m}
  - name: features
    path: %s
    stage: features
    snapshot: {every: 0, quiet: 1m}
`, raw, feat)))

	d := startDaemon(t, e.environ(nil), "serve", "--config", config, "--address", "127.0.0.1:0")
	admin := d.adminToken
	if admin == "" {
		t.Fatalf("the first start printed no admin token\n%s", d.output())
	}
	ds := d.datasets(admin)
	if len(ds) != 2 || ds[0].Name != "features" || ds[0].Stage != "features" || ds[0].Path != feat || ds[0].Versions != 1 ||
		ds[1].Name != "raw-data" || ds[1].Stage != "collect" || ds[1].Path != raw || ds[1].Versions != 1 {
		t.Fatalf("datasets: %+v, want features and raw-data with their stages, paths and baselines", ds)
	}

	// A data scientist of the features stage sees that stage only.
	r := e.ok("token", "create", "--role", "data-scientist", "--name", "ds-features", "--stage", "features")
	scientist := strings.TrimSpace(r.stdout)
	if ds := d.datasets(scientist); len(ds) != 1 || ds[0].Name != "features" {
		t.Errorf("the features data scientist lists %+v, want features only", ds)
	}
	if vs := d.versions(scientist, "features"); vs.Total != 1 {
		t.Errorf("the features data scientist sees %d versions of features, want 1", vs.Total)
	}
	for _, req := range []struct{ method, path string }{
		{http.MethodGet, "/api/v1/datasets/raw-data"},
		{http.MethodGet, "/api/v1/datasets/raw-data/versions"},
		{http.MethodPost, "/api/v1/datasets/raw-data/snapshots"},
		{http.MethodGet, "/api/v1/audit"},
	} {
		if status, b := d.do(req.method, req.path, scientist, nil, nil); status != http.StatusForbidden {
			t.Errorf("the features data scientist: %s %s: %d %s, want 403", req.method, req.path, status, b)
		}
	}
	d.stop()

	// A mistake in the file is refused, naming its line. (Each refusal must
	// come at once: a daemon that starts instead is stopped after 30 s.)
	refused := func(extra []string, args ...string) result {
		return runWithin(t, 30*time.Second, e.environ(extra), append(args, "--address", "127.0.0.1:0")...)
	}
	bad := filepath.Join(dir, "bad.yaml")
	testkit.WriteFile(t, bad, []byte(fmt.Sprintf("datasets:\n  - name: raw-data\n    path: %s\n    snapshot: {every: soon}\n", raw)))
	r = refused(nil, "serve", "--config", bad)
	if r.code != 1 && r.code != 2 || !strings.HasPrefix(r.stderr, "custody: "+bad+":4:") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("serve with a broken config: want exit 1 or 2 and one error line naming %s:4\n%s", bad, r)
	}
	// So is a directory that does not exist.
	missing := filepath.Join(dir, "no-such-dir")
	assertFailure(t, refused(nil, "protect", missing), 2, missing, "not a directory")
	// And custody's own data inside a dataset: every version would hold
	// the vault, each larger than the last.
	inside := filepath.Join(feat, ".custody")
	assertFailure(t, refused([]string{"CUSTODY_DATA_DIR=" + inside}, "protect", feat), 2, inside, "inside", feat)
	insideVault := filepath.Join(raw, "vault")
	assertFailure(t, refused([]string{"CUSTODY_VAULT=" + insideVault}, "serve", "--config", config), 2, insideVault, "inside", raw)
	if _, err := os.Stat(inside); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused protect made %s: %v", inside, err)
	}
}

// TestProtectResumesAnInterruptedFirstStart kills protect's first start
// while it makes the vault (its key is being derived: the config is
// written, the marker not yet), and wants the next start to finish the job.
func TestProtectResumesAnInterruptedFirstStart(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	src := filepath.Join(t.TempDir(), "notes")
	makeDataset(t, newRand(t), src, 1, 16<<10, 1, 4<<10)
	environ := freshEnviron(t, "CUSTODY_DATA_DIR="+data)
	args := []string{"protect", src, "--address", "127.0.0.1:0"}
	vault := filepath.Join(data, "vault")
	exists := func(name string) bool { _, err := os.Stat(filepath.Join(vault, name)); return err == nil }

	cmd := exec.Command(custodyBin, args...)
	cmd.Env = environ
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	killed := false
	for end := time.Now().Add(daemonStart); !killed; time.Sleep(time.Millisecond) {
		if exists("custody-vault") || time.Now().After(end) {
			break
		}
		if exists("config") {
			cmd.Process.Kill()
			killed = !exists("custody-vault")
		}
		select {
		case <-exited:
			t.Fatalf("protect exited by itself:\n%s", out.String())
		default:
		}
	}
	cmd.Process.Kill()
	<-exited
	if !killed {
		t.Skip("the vault was made before protect could be killed in the middle")
	}

	d := startDaemon(t, environ, args...)
	if !strings.HasPrefix(d.adminToken, "cst_") || !strings.Contains(d.stdout.String(), filepath.Join(data, "passphrase")) {
		t.Errorf("the start after the interrupted one should print the admin token and where the passphrase is\n%s", d.output())
	}
	if ds := d.datasets(d.adminToken); len(ds) != 1 || ds[0].Versions != 1 {
		t.Errorf("datasets: %+v, want notes with its baseline", ds)
	}
	d.stop()
}

// TestProtectWithInotifyTakesNotItsOwnCanariesForAnAttack: inotify cannot
// tell who writes, so the canaries protect places must not be created
// while it watches, or the guard reports their creation as an attack.
func TestProtectWithInotifyTakesNotItsOwnCanariesForAnAttack(t *testing.T) {
	t.Parallel()
	src := filepath.Join(t.TempDir(), "notes")
	makeDataset(t, newRand(t), src, 1, 16<<10, 2, 4<<10)
	d := startDaemon(t, freshEnviron(t, "CUSTODY_DATA_DIR="+t.TempDir(), "CUSTODY_PASSWORD="+testPassphrase),
		"protect", src, "--backend", "inotify", "--address", "127.0.0.1:0", "--snapshot-every", "0", "--snapshot-quiet", "0")
	admin := d.adminToken
	// The guard judges events in order: once it has seen this change, it
	// has seen everything before it.
	changed := filepath.Join(src, "text", "shard-000.csv")
	appendTo(t, changed, "one more row\n")
	eventually(t, 30*time.Second, "the change in the ledger", func() (bool, string) {
		n := len(d.audit(admin, url.Values{"kind": {"file.modify"}, "path": {changed}}))
		return n > 0, fmt.Sprint(n, " entries")
	})
	for _, kind := range []string{"incident.open", "gate.close"} {
		if es := d.audit(admin, url.Values{"kind": {kind}}); len(es) > 0 {
			t.Errorf("a first start with inotify: %s %+v", kind, es[0].Entry)
		}
	}
	d.stop()
}
