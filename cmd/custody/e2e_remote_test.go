package main_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/catalog"
)

// TestCLIThroughTheServerNeedsATokenNotThePassphrase runs the read
// commands and incident handling against a running daemon with
// --server: no vault, no passphrase, only a token; and checks the
// refusals a wrong token, a missing one or a wrong certificate get.
func TestCLIThroughTheServerNeedsATokenNotThePassphrase(t *testing.T) {
	t.Parallel()
	dir, data := t.TempDir(), filepath.Join(t.TempDir(), "features")
	if err := os.MkdirAll(filepath.Join(data, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"a.csv": "x,y\n1,2\n", "sub/b.csv": "3,4\n"} {
		if err := os.WriteFile(filepath.Join(data, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	daemonEnv := freshEnviron(t, "CUSTODY_DATA_DIR="+dir, "CUSTODY_PASSWORD="+testPassphrase)
	d := startDaemon(t, daemonEnv, "protect", data, "--address", "127.0.0.1:0", "--snapshot-quiet", "500ms", "--snapshot-every", "0")
	if d.adminToken == "" {
		t.Fatalf("no admin token printed\n%s", d.output())
	}
	remote := func(token string, extra ...string) []string {
		return freshEnviron(t, append([]string{"CUSTODY_SERVER=" + d.url, "CUSTODY_SERVER_FINGERPRINT=" + d.fingerprint, "CUSTODY_TOKEN=" + token}, extra...)...)
	}
	admin := remote(d.adminToken)
	ok := func(environ []string, args ...string) string {
		t.Helper()
		r := runWith(t, environ, args...)
		if r.code != 0 {
			t.Fatalf("%s", r)
		}
		return r.stdout
	}

	var versions []struct{ ID string }
	if err := decodeJSON(ok(admin, "log", "--json"), &versions); err != nil || len(versions) != 1 {
		t.Fatalf("log through the server: %v %v", versions, err)
	}
	first := versions[0].ID
	if out := ok(admin, "ls", first[:12]+":sub"); !strings.Contains(out, "b.csv") {
		t.Errorf("ls through the server does not list sub/b.csv:\n%s", out)
	}
	appendTo(t, filepath.Join(data, "a.csv"), "5,6\n")
	eventually(t, 30*time.Second, "a second version", func() (bool, string) {
		out := ok(admin, "log", "--json")
		versions = nil
		decodeJSON(out, &versions)
		return len(versions) == 2, out
	})
	if out := ok(admin, "diff", first[:12], versions[0].ID[:12]); !strings.Contains(out, "M a.csv") {
		t.Errorf("diff through the server:\n%s", out)
	}
	if out := ok(admin, "audit", "log", "--kind", "file.modify"); !strings.Contains(out, filepath.Join(data, "a.csv")) {
		t.Errorf("audit log through the server lacks the change:\n%s", out)
	}
	if out := ok(admin, "lockouts", "list"); !strings.Contains(out, "no lockouts") {
		t.Errorf("lockouts list: %s", out)
	}
	if out := ok(admin, "offsite", "status"); !strings.Contains(out, `"offsites": []`) {
		t.Errorf("offsite status: %s", out)
	}

	// An incident, as the guard would have opened it, handled through the
	// server: its transition is recorded with the token as the actor.
	db, err := catalog.Open(context.Background(), filepath.Join(dir, "vault", "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	uid := uint32(4242)
	in, err := db.OpenIncident(context.Background(), catalog.Incident{Severity: catalog.SeverityWarning, UID: &uid, User: "mallory",
		Datasets: []string{"features"}, FirstEvent: time.Now().UTC()})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	id := strconv.FormatInt(in.ID, 10)
	if out := ok(admin, "incidents", "list"); !strings.Contains(out, "mallory") {
		t.Errorf("incidents list lacks the incident:\n%s", out)
	}
	ok(admin, "incidents", "false-positive", id)
	if out := ok(admin, "incidents", "show", id, "--json"); !strings.Contains(out, `"State": "false-positive"`) {
		t.Errorf("after false-positive through the server:\n%s", out)
	}
	if out := ok(admin, "audit", "log", "--kind", "incident.false-positive", "--json"); !strings.Contains(out, `"token": "admin"`) {
		t.Errorf("the transition is not recorded with the token as actor:\n%s", out)
	}

	// Refusals: each names what is wrong, and none echoes the token.
	var made struct{ Secret string }
	if status, b := d.do(http.MethodPost, "/api/v1/tokens", d.adminToken, map[string]string{"name": "reader", "role": "auditor"}, &made); status != http.StatusCreated {
		t.Fatalf("create a token: %d %s", status, b)
	}
	auditor := made.Secret
	r := runWith(t, remote(auditor), "log")
	assertFailure(t, r, 1, "role auditor may not datasets.read", "HTTP 403")
	r = runWith(t, remote(""), "log")
	assertFailure(t, r, 2, "CUSTODY_TOKEN")
	r = runWith(t, remote(d.adminToken, "CUSTODY_SERVER_FINGERPRINT="+strings.Repeat("ab:", 31)+"ab"), "log")
	assertFailure(t, r, 1, "fingerprint")
	if strings.Contains(r.stderr, d.adminToken) {
		t.Errorf("an error shows the token: %s", r.stderr)
	}
	r = runWith(t, remote("cst_"+strings.Repeat("A", 43)), "incidents", "list")
	assertFailure(t, r, 1, "unknown token", "HTTP 401")
}
