package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/audit"
	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/config"
	"github.com/custodyhq/custody/internal/guard"
	"github.com/custodyhq/custody/internal/ledger"
	"github.com/custodyhq/custody/internal/schedule"
	"github.com/custodyhq/custody/internal/server/auth"
	"github.com/custodyhq/custody/internal/snapshot"
	"github.com/custodyhq/custody/internal/testkit"
	"github.com/custodyhq/custody/internal/vault"
	"github.com/custodyhq/custody/internal/vaulttest"
)

// testServer is a Server on a real vault, catalog and ledger stream,
// answering plain HTTP on loopback, with a token per role.
type testServer struct {
	*Server
	t       testing.TB
	url     string
	v       *vault.Vault
	db      *catalog.DB
	version *vault.Version // of dataset "features" (stage "features")
	secrets map[string]string
	stop    func() // stops the stream; after it, the ledger holds every entry
}

// Token names of the test server: one per role, and data-scientist
// tokens for the "features" stage (mine) and another one (theirs).
const (
	tokAdmin, tokOperator, tokAuditor = "admin", "operator", "auditor"
	tokDSMine, tokDSTheirs            = "ds-features", "ds-collect"
)

func newTestServer(t testing.TB, mod func(*Options)) *testServer {
	t.Helper()
	ctx := context.Background()
	v, _ := vaulttest.New(t)
	db, err := catalog.Open(ctx, filepath.Join(t.TempDir(), "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	rec, err := audit.New(v, db)
	if err != nil {
		t.Fatal(err)
	}
	stream := rec.Stream(audit.StreamOptions{})
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- stream.Run(sctx) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("stream: %v", err)
			}
		}
	}
	t.Cleanup(stop)

	dir := t.TempDir()
	testkit.WriteFiles(t, dir, map[string][]byte{"a.csv": []byte("x,y\n1,2\n"), "sub/b.csv": []byte("3,4\n")})
	ver := vaulttest.Snapshot(t, v, "features", dir)
	if err := db.PutVersion(ctx, catalog.VersionOf(ver)); err != nil {
		t.Fatal(err)
	}
	opts := Options{Vault: v, DB: db, Recorder: rec, Entries: stream, RestoreDir: t.TempDir(),
		Datasets:  []Dataset{{Name: "features", Path: dir, Stage: "features"}, {Name: "raw", Path: t.TempDir(), Stage: "collect"}},
		Incidents: guard.Manager{Vault: v, DB: db},
		Snapshot: func(ctx context.Context, dataset, reason string) (string, error) {
			taken, err := snapshot.Take(ctx, v, dataset, "", reason, dir, snapshot.ArchiveOptions{})
			if err != nil {
				return "", err
			}
			return taken.Version.ID.String(), db.PutVersion(ctx, catalog.VersionOf(taken.Version))
		},
		RateLimit: config.RateLimit{PerToken: 1000, PerAddress: 1000, Burst: 1000},
	}
	if mod != nil {
		mod(&opts)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() { hs.Close(); s.Close() })
	ts := &testServer{Server: s, t: t, url: hs.URL, v: v, db: db, version: ver, secrets: map[string]string{}, stop: stop}
	for _, tk := range []struct {
		name, role string
		stages     []string
	}{
		{tokAdmin, catalog.RoleAdmin, nil}, {tokOperator, catalog.RoleOperator, nil}, {tokAuditor, catalog.RoleAuditor, nil},
		{tokDSMine, catalog.RoleDataScientist, []string{"features"}}, {tokDSTheirs, catalog.RoleDataScientist, []string{"collect"}},
	} {
		ts.secrets[tk.name] = ts.token(tk.name, tk.role, tk.stages, time.Time{})
	}
	return ts
}

// token creates a token in the catalog and returns its secret.
func (ts *testServer) token(name, role string, stages []string, expires time.Time) string {
	secret, hash := auth.NewSecret()
	created := time.Now()
	if !expires.IsZero() && expires.Before(created) {
		created = expires.Add(-time.Hour)
	}
	if _, err := ts.db.CreateToken(context.Background(), catalog.Token{Name: name, Role: role, Stages: stages, Created: created, Expires: expires, CreatedBy: "test"}, hash); err != nil {
		ts.t.Fatal(err)
	}
	return secret
}

// do sends a request with the secret of token name ("" for none) and
// returns the status and body.
func (ts *testServer) do(name, method, path string, body []byte) (int, []byte, http.Header) {
	ts.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, ts.url+path, rd)
	if err != nil {
		ts.t.Fatal(err)
	}
	if name != "" {
		secret, ok := ts.secrets[name]
		if !ok {
			secret = name // a raw secret
		}
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		ts.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

// sample is a concrete request for a route pattern, on the "features"
// dataset (stage "features") wherever a route concerns a dataset.
func (ts *testServer) sample(pattern string) (method, path string, body []byte) {
	short := ts.version.ID.String()[:12]
	method, p, _ := strings.Cut(pattern, " ")
	r := strings.NewReplacer("{dataset}", "features", "{version}", short, "{job}", "job_0000000000000000",
		"{index}", "0", "{id}", "999", "{uid}", "4242", "{name}", "nowhere")
	path = r.Replace(p)
	switch pattern {
	case "GET /api/v1/diff":
		path += "?from=" + short + "&to=" + short
	case "POST /api/v1/restores":
		body = []byte(`{"version":"` + short + `"}`)
	case "POST /api/v1/audit/consistency":
		body = []byte(`{"checkpoint":"not a checkpoint"}`)
	case "POST /api/v1/tokens":
		body = []byte(`{"name":"made-by-test","role":"auditor"}`)
	case "GET /api/v1/reports/custody":
		path += "?dataset=features"
	case "POST /api/v1/incidents/{id}/recover":
		body = []byte(`{}`)
	case "DELETE /api/v1/tokens/{id}":
		path = "/api/v1/tokens/tok_0000000000000000"
	}
	return method, path, body
}

// roleOf is each test token's role.
var roleOf = map[string]string{tokAdmin: catalog.RoleAdmin, tokOperator: catalog.RoleOperator, tokAuditor: catalog.RoleAuditor,
	tokDSMine: catalog.RoleDataScientist, tokDSTheirs: catalog.RoleDataScientist}

func TestEveryRouteAllowsAndDeniesAsTheMatrixSays(t *testing.T) {
	ts := newTestServer(t, nil)
	for _, rt := range ts.routes() {
		if rt.action == "" {
			continue
		}
		for _, tok := range []string{tokAdmin, tokOperator, tokAuditor, tokDSMine, tokDSTheirs} {
			t.Run(rt.pattern+"/"+tok, func(t *testing.T) {
				scope := auth.ScopeOf(roleOf[tok], rt.action)
				want := scope == auth.Granted || scope == auth.OwnStages && tok == tokDSMine
				if rt.pattern == "GET /api/v1/datasets" { // a list, filtered to the token's stages
					want = scope != auth.Denied
				}
				method, path, body := ts.sample(rt.pattern)
				status, resp, _ := ts.do(tok, method, path, body)
				if status == http.StatusUnauthorized || status == http.StatusTooManyRequests || status >= 500 && status != http.StatusNotImplemented {
					t.Fatalf("%s %s as %s: %d %s", method, path, tok, status, resp)
				}
				if got := status != http.StatusForbidden; got != want {
					t.Errorf("%s %s as %s (%s): status %d %s; the matrix says allowed=%v", method, path, tok, scope, status, resp, want)
				}
			})
		}
	}
}

func TestDataScientistSeesOnlyItsStages(t *testing.T) {
	ts := newTestServer(t, nil)
	names := func(tok string) []string {
		status, body, _ := ts.do(tok, "GET", "/api/v1/datasets", nil)
		if status != 200 {
			t.Fatalf("%s: %d %s", tok, status, body)
		}
		var resp struct{ Datasets []apiDataset }
		if err := json.Unmarshal(body, &resp); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, d := range resp.Datasets {
			out = append(out, d.Name)
		}
		return out
	}
	if got := fmt.Sprint(names(tokDSMine)); got != "[features]" {
		t.Errorf("ds-features sees %s, want [features]", got)
	}
	if got := fmt.Sprint(names(tokDSTheirs)); got != "[raw]" {
		t.Errorf("ds-collect sees %s, want [raw]", got)
	}
	if got := fmt.Sprint(names(tokAdmin)); got != "[features raw]" {
		t.Errorf("admin sees %s, want [features raw]", got)
	}
}

func TestRefusesMissingMalformedUnknownExpiredRevokedAndSuspendedTokens(t *testing.T) {
	ts := newTestServer(t, nil)
	ctx := context.Background()
	expired := ts.token("expired", catalog.RoleAdmin, nil, time.Now().Add(-time.Hour))
	revoked := ts.token("revoked", catalog.RoleAdmin, nil, time.Time{})
	if _, err := ts.db.RevokeToken(ctx, "revoked", time.Now()); err != nil {
		t.Fatal(err)
	}
	suspended := ts.token("suspended", catalog.RoleAdmin, nil, time.Time{})
	toks, _ := ts.db.Tokens(ctx, false)
	for _, tk := range toks {
		if tk.Name == "suspended" {
			if _, err := ts.db.SuspendToken(ctx, tk.ID, time.Now(), true); err != nil {
				t.Fatal(err)
			}
		}
	}
	unknown, _ := auth.NewSecret()
	for _, c := range []struct{ name, secret, want string }{
		{"missing", "", "no bearer token"},
		{"malformed", "cst_short", "is not"},
		{"unknown", unknown, "unknown token"},
		{"expired", expired, "expired"},
		{"revoked", revoked, "revoked"},
		{"suspended", suspended, "suspended"},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, body, h := ts.do(c.secret, "GET", "/api/v1/datasets", nil)
			if status != http.StatusUnauthorized {
				t.Fatalf("status %d %s, want 401", status, body)
			}
			if !strings.Contains(string(body), c.want) {
				t.Errorf("body %s does not say %q", body, c.want)
			}
			if c.secret != "" && strings.Contains(string(body), c.secret) {
				t.Errorf("the response echoes the secret: %s", body)
			}
			if h.Get("WWW-Authenticate") == "" {
				t.Error("no WWW-Authenticate header")
			}
		})
	}
	// A token revoked through the API is refused at once, though
	// lookups are cached.
	if status, body, _ := ts.do(tokOperator, "GET", "/api/v1/datasets", nil); status != 200 {
		t.Fatalf("operator: %d %s", status, body)
	}
	var id string
	toks, _ = ts.db.Tokens(ctx, false)
	for _, tk := range toks {
		if tk.Name == tokOperator {
			id = tk.ID
		}
	}
	if status, body, _ := ts.do(tokAdmin, "DELETE", "/api/v1/tokens/"+id, nil); status != 200 {
		t.Fatalf("revoke: %d %s", status, body)
	}
	if status, body, _ := ts.do(tokOperator, "GET", "/api/v1/datasets", nil); status != http.StatusUnauthorized {
		t.Fatalf("revoked operator: %d %s, want 401", status, body)
	}
}

func TestRateLimitsPerTokenAndPerAddress(t *testing.T) {
	t.Run("token", func(t *testing.T) {
		ts := newTestServer(t, func(o *Options) { o.RateLimit = config.RateLimit{PerToken: 1, PerAddress: 1e6, Burst: 5} })
		for i := range 5 {
			if status, body, _ := ts.do(tokAdmin, "GET", "/api/v1/datasets", nil); status != 200 {
				t.Fatalf("request %d: %d %s", i, status, body)
			}
		}
		status, body, h := ts.do(tokAdmin, "GET", "/api/v1/datasets", nil)
		if status != http.StatusTooManyRequests || h.Get("Retry-After") == "" {
			t.Fatalf("6th request: %d %s Retry-After=%q, want 429 with Retry-After", status, body, h.Get("Retry-After"))
		}
		// Another token from the same address is not limited by it.
		if status, body, _ := ts.do(tokAuditor, "GET", "/api/v1/incidents", nil); status != 200 {
			t.Fatalf("another token: %d %s", status, body)
		}
	})
	t.Run("address", func(t *testing.T) {
		ts := newTestServer(t, func(o *Options) { o.RateLimit = config.RateLimit{PerToken: 1000, PerAddress: 1, Burst: 3} })
		for i, tok := range []string{tokAdmin, tokOperator, "cst_garbage"} {
			ts.do(tok, "GET", "/api/v1/datasets", nil)
			_ = i
		}
		// Unauthenticated guessing counts against the address too.
		status, _, h := ts.do(tokAuditor, "GET", "/api/v1/incidents", nil)
		if status != http.StatusTooManyRequests || h.Get("Retry-After") == "" {
			t.Fatalf("4th request from the address: %d, want 429 with Retry-After", status)
		}
	})
}

func TestRefusesOversizedAndMalformedBodies(t *testing.T) {
	ts := newTestServer(t, func(o *Options) { o.MaxBody = 4096 })
	big := []byte(`{"version":"` + strings.Repeat("a", 8192) + `"}`)
	for _, c := range []struct {
		name   string
		body   []byte
		ctype  string
		status int
	}{
		{"oversized", big, "application/json", http.StatusRequestEntityTooLarge},
		{"not json", []byte(`{"version":`), "application/json", http.StatusBadRequest},
		{"unknown field", []byte(`{"version":"abcdef12","target":"/etc"}`), "application/json", http.StatusBadRequest},
		{"two objects", []byte(`{"version":"abcdef12"}{}`), "application/json", http.StatusBadRequest},
		{"wrong type", []byte(`{"version":12}`), "application/json", http.StatusBadRequest},
		{"empty", []byte(``), "application/json", http.StatusBadRequest},
		{"not json content type", []byte(`version=abcdef12`), "application/x-www-form-urlencoded", http.StatusUnsupportedMediaType},
		{"path escapes", []byte(`{"version":"` + ts.version.ID.String()[:12] + `","path":"../../etc"}`), "application/json", http.StatusBadRequest},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", ts.url+"/api/v1/restores", bytes.NewReader(c.body))
			req.Header.Set("Authorization", "Bearer "+ts.secrets[tokAdmin])
			req.Header.Set("Content-Type", c.ctype)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Fatalf("status %d %s, want %d", resp.StatusCode, b, c.status)
			}
			var e map[string]string
			if err := json.Unmarshal(b, &e); err != nil || e["error"] == "" {
				t.Errorf("body %s is not a JSON error", b)
			}
		})
	}
}

func TestEveryRequestIsALedgerEntryWithItsPrincipal(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.do(tokAuditor, "GET", "/api/v1/incidents", nil)
	ts.do(tokAuditor, "GET", "/api/v1/datasets", nil) // denied
	ts.do("", "GET", "/api/v1/datasets", nil)         // no token
	ts.do(tokAdmin, "GET", "/api/v1/secrets", nil)    // no such route
	ts.do(tokAdmin, "PUT", "/api/v1/datasets", nil)   // nor method
	ts.stop()
	hits, err := ts.db.Search(context.Background(), catalog.Query{Kind: "api.request", After: -1})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range hits {
		e, err := ledger.ParseLeaf(h.Record)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s %s %s %s", e.Actor.Token, e.Detail["route"], e.Detail["status"], e.Outcome))
	}
	want := []string{
		"auditor GET /api/v1/incidents 200 ok",
		"auditor GET /api/v1/datasets 403 denied",
		" GET /api/v1/datasets 401 denied",
		" / 404 failed: Not Found",
		" / 404 failed: Not Found",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ledger has\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestRestoreJobWritesTheVersionUnderTheRestoreDirectory(t *testing.T) {
	ts := newTestServer(t, nil)
	status, body, _ := ts.do(tokOperator, "POST", "/api/v1/restores", []byte(`{"version":"`+ts.version.ID.String()[:12]+`","path":"sub"}`))
	if status != http.StatusAccepted {
		t.Fatalf("%d %s", status, body)
	}
	var j Job
	json.Unmarshal(body, &j)
	testkit.WaitFor(t, testkit.Long, "the restore job to end", func() bool {
		_, body, _ = ts.do(tokOperator, "GET", "/api/v1/restores/"+j.ID, nil)
		json.Unmarshal(body, &j)
		return j.State == "done" || j.State == "failed"
	})
	if j.State != "done" {
		t.Fatalf("job %+v", j)
	}
	res := j.Result.(map[string]any)
	target := res["target"].(string)
	if !strings.HasPrefix(target, ts.opts.RestoreDir+string(filepath.Separator)) {
		t.Fatalf("restored to %s, outside %s", target, ts.opts.RestoreDir)
	}
	b, err := os.ReadFile(filepath.Join(target, "b.csv"))
	if err != nil || string(b) != "3,4\n" {
		t.Fatalf("restored b.csv = %q, %v", b, err)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	ready := fmt.Errorf("starting")
	ts := newTestServer(t, func(o *Options) { o.Ready = func() error { return ready } })
	if status, _, _ := ts.do("", "GET", "/healthz", nil); status != 200 {
		t.Errorf("healthz %d", status)
	}
	if status, _, _ := ts.do("", "GET", "/readyz", nil); status != http.StatusServiceUnavailable {
		t.Errorf("readyz while starting: %d, want 503", status)
	}
	ready = nil
	if status, _, _ := ts.do("", "GET", "/readyz", nil); status != 200 {
		t.Errorf("readyz when ready: %d", status)
	}
	ts.do(tokOperator, "GET", "/api/v1/datasets", nil)
	status, body, _ := ts.do(tokOperator, "GET", "/metrics", nil)
	if status != 200 || !strings.Contains(string(body), `custody_api_requests_total{code="200",route="GET /api/v1/datasets"} 1`) ||
		!strings.Contains(string(body), "custody_incidents_open") {
		t.Errorf("metrics: %d %.300s", status, body)
	}
}

func TestAuditPagesAreJSONAndFollowOnFromNext(t *testing.T) {
	ts := newTestServer(t, nil)
	for range 5 {
		ts.do(tokAuditor, "GET", "/api/v1/incidents", nil)
	}
	ts.stop() // every request so far is in the ledger
	type page struct {
		Entries []struct {
			Index int64
			Entry ledger.Entry
		}
		Next *int64
	}
	var got []int64
	after := "-1"
	for range 10 {
		_, body, _ := ts.do(tokAuditor, "GET", "/api/v1/audit?kind=api.request&limit=2&after="+after, nil)
		var p page
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatalf("page after %s is not JSON: %v\n%s", after, err, body)
		}
		for _, e := range p.Entries {
			if e.Entry.Kind != "api.request" || e.Entry.Actor.Token != tokAuditor {
				t.Errorf("entry %d: %+v", e.Index, e.Entry)
			}
			got = append(got, e.Index)
		}
		if p.Next == nil {
			break
		}
		after = fmt.Sprint(*p.Next)
	}
	if len(got) != 5 {
		t.Fatalf("paged through %d entries %v, want the 5 requests", len(got), got)
	}
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("indexes not ascending: %v", got)
		}
	}
}

func TestFullAuditPagesStayTheSameAndPartialOnesGrow(t *testing.T) {
	ts := newTestServer(t, nil)
	ctx := context.Background()
	add := func(n int) {
		for range n {
			if err := ts.opts.Entries.Add(ctx, ledger.Entry{Time: time.Now().UTC(), Kind: "file.modify", Path: "/d/f", Outcome: "ok"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	count := func(path string) (int, string) {
		var p struct{ Entries []json.RawMessage }
		_, body, _ := ts.do(tokAuditor, "GET", path, nil)
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatalf("%s: %v %s", path, err, body)
		}
		return len(p.Entries), string(body)
	}
	// The stream appends what it is given within its linger.
	var partial int
	add(3)
	testkit.WaitFor(t, testkit.Long, "the 3 entries in the audit", func() bool {
		partial, _ = count("/api/v1/audit?kind=file.modify&limit=100")
		return partial >= 3
	})
	full, fullBody := count("/api/v1/audit?kind=file.modify&limit=2")
	if full != 2 || partial != 3 {
		t.Fatalf("pages of %d and %d entries, want 2 and 3", full, partial)
	}
	add(4)
	testkit.WaitFor(t, testkit.Long, "4 more entries in the audit", func() bool {
		partial, _ = count("/api/v1/audit?kind=file.modify&limit=100")
		return partial >= 7
	})
	if partial != 7 {
		t.Errorf("the partial page has %d entries after 4 more, want 7", partial)
	}
	if n, body := count("/api/v1/audit?kind=file.modify&limit=2"); n != 2 || body != fullBody {
		t.Errorf("the full page changed:\n%s\nnow\n%s", fullBody, body)
	}
}

func TestASnapshotThroughTheAPIShowsInTheVersionsAtOnce(t *testing.T) {
	ts := newTestServer(t, nil)
	list := func() int {
		var r struct{ Total int }
		_, body, _ := ts.do(tokOperator, "GET", "/api/v1/datasets/features/versions", nil)
		json.Unmarshal(body, &r)
		return r.Total
	}
	if n := list(); n != 1 {
		t.Fatalf("%d versions, want 1", n)
	}
	status, body, _ := ts.do(tokOperator, "POST", "/api/v1/datasets/features/snapshots", nil)
	if status != http.StatusAccepted {
		t.Fatalf("%d %s", status, body)
	}
	var j Job
	json.Unmarshal(body, &j)
	testkit.WaitFor(t, testkit.Long, "the snapshot job to end", func() bool {
		_, body, _ = ts.do(tokOperator, "GET", "/api/v1/datasets/features/snapshots/"+j.ID, nil)
		json.Unmarshal(body, &j)
		return j.State == "done" || j.State == "failed"
	})
	if j.State != "done" {
		t.Fatalf("job %+v", j)
	}
	if n := list(); n != 2 {
		t.Fatalf("%d versions right after the snapshot job, want 2", n)
	}
}

func TestADatasetShowsItsSnapshotSchedule(t *testing.T) {
	next := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	ts := newTestServer(t, func(o *Options) {
		o.Schedule = func() []schedule.DatasetStatus {
			return []schedule.DatasetStatus{{Name: "features", Next: next, NextReason: "scheduled", Dirty: true, Failures: 2, LastError: "disk full"}}
		}
	})
	var d apiDataset
	_, body, _ := ts.do(tokOperator, "GET", "/api/v1/datasets/features", nil)
	if err := json.Unmarshal(body, &d); err != nil || d.Schedule == nil {
		t.Fatalf("%v %s", err, body)
	}
	if !d.Schedule.Next.Equal(next) || d.Schedule.NextReason != "scheduled" || !d.Schedule.Dirty || d.Schedule.Failures != 2 || d.Schedule.LastError != "disk full" {
		t.Errorf("schedule %+v", *d.Schedule)
	}
	_, body, _ = ts.do(tokOperator, "GET", "/api/v1/datasets/raw", nil)
	if strings.Contains(string(body), "schedule") {
		t.Errorf("a dataset the schedule does not list shows one: %s", body)
	}
}
