package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestExampleParsesClean(t *testing.T) {
	cfg, errs := Parse("custody.yaml", Example())
	if len(errs) > 0 {
		t.Fatalf("the example has mistakes:\n%v", errors.Join(errs...))
	}
	if len(cfg.Datasets) != len(Stages) {
		t.Fatalf("%d datasets, want one per stage (%d)", len(cfg.Datasets), len(Stages))
	}
	for i, ds := range cfg.Datasets {
		if ds.Stage != Stages[i] {
			t.Errorf("datasets[%d] is stage %q, want %q", i, ds.Stage, Stages[i])
		}
		if want := "/srv/ml/" + Stages[i]; ds.Path != want {
			t.Errorf("datasets[%d] path %q, want %q", i, ds.Path, want)
		}
		if len(ds.Writers) == 0 || ds.Writers[0].Name != "" {
			t.Errorf("datasets[%d] writers %v: the example must name writers by uid to pass on any machine", i, ds.Writers)
		}
		frozen := ds.Stage == "split" || ds.Stage == "deploy"
		if ds.Frozen != frozen {
			t.Errorf("datasets[%d] (%s) frozen = %v, want %v", i, ds.Stage, ds.Frozen, frozen)
		}
	}
}

func TestExampleFileIsTheEmbeddedOne(t *testing.T) {
	b, err := os.ReadFile("../../examples/custody.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, Example()) {
		t.Fatal("examples/custody.yaml differs from internal/config/example.yaml: copy one over the other")
	}
}

func TestEmptyFileGivesDefaults(t *testing.T) {
	for _, src := range []string{"", "\n", "# nothing yet\n", "---\n", "~\n", "datasets:\n"} {
		cfg, errs := Parse("custody.yaml", []byte(src))
		if len(errs) > 0 {
			t.Fatalf("%q: %v", src, errs)
		}
		if d := cmp.Diff(Default(), cfg); d != "" {
			t.Errorf("%q: not the defaults: %s", src, d)
		}
	}
}

func TestListElementsGetDefaultsWhereSilent(t *testing.T) {
	cfg, errs := Parse("c.yaml", []byte(`
offsites:
  - {name: a, url: s3://bucket-a}
  - {name: b, url: s3://bucket-b, schedule: 0}
datasets:
  - {name: x, path: /x}
  - {name: y, path: /y, snapshot: {every: 0, quiet: 7d}}
`))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if got := cfg.Offsites[0].Schedule; got != time.Hour {
		t.Errorf("default schedule %v, want 1h", got)
	}
	if got := cfg.Offsites[1].Schedule; got != 0 {
		t.Errorf("explicit schedule 0 became %v", got)
	}
	if got, want := cfg.Datasets[0].Snapshot, (Schedule{Every: time.Hour, Quiet: 5 * time.Minute}); got != want {
		t.Errorf("default snapshot %+v, want %+v", got, want)
	}
	if got, want := cfg.Datasets[1].Snapshot, (Schedule{Every: 0, Quiet: 7 * 24 * time.Hour}); got != want {
		t.Errorf("snapshot %+v, want %+v", got, want)
	}
	if cfg.Datasets[0].WriterUIDs() != nil {
		t.Errorf("no writers given, but WriterUIDs = %v", cfg.Datasets[0].WriterUIDs())
	}
}

func TestWritersResolveNamesAndUIDs(t *testing.T) {
	cfg, errs := Parse("c.yaml", []byte("datasets:\n  - {name: x, path: /x, writers: [root, 1001, \"0\"]}\n"))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	want := []Writer{{Name: "root", UID: 0}, {UID: 1001}, {UID: 0}}
	if d := cmp.Diff(want, cfg.Datasets[0].Writers); d != "" {
		t.Fatal(d)
	}
	if d := cmp.Diff([]uint32{0, 1001, 0}, cfg.Datasets[0].WriterUIDs()); d != "" {
		t.Fatal(d)
	}
}

// TestEachMistakeIsPlaced gives one mistake per file and wants exactly one
// error, with its line, column and field path.
func TestEachMistakeIsPlaced(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"yaml syntax", "vault: [a\nb: c\n", `c.yaml:1: YAML syntax: did not find expected ',' or ']'`},
		{"second document", "vault: /a\n---\nvault: /b\n", `c.yaml:2:1: a second YAML document: a config file holds one (remove the ---)`},
		{"top is a list", "- a\n", `c.yaml:1:1: want a mapping (name: value lines), found a list`},
		{"key set twice", "vault: /a\nvault: /b\n", `c.yaml:2:1: vault: set twice (first on line 1)`},
		{"relative vault", "vault: vault\n", `c.yaml:1:1: vault: "vault" is not an absolute path`},
		{"vault scheme", "vault: gs://b/p\n", `c.yaml:1:1: vault: "gs://b/…" is neither a directory nor an s3:// URL`},
		{"vault bucket", "vault: s3://B\n", `c.yaml:1:1: vault: S3 location "s3://B": bucket name "B" must have 3 to 63 characters`},
		{"vault credentials", "vault: s3://k:secret@bucket\n", `c.yaml:1:1: vault: credentials do not belong in the URL (not shown); use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or a profile`},
		{"catalog scheme", "catalog: mysql://u:pw@h/db\n", `c.yaml:1:1: catalog: "mysql://h/…" is neither a SQLite file path nor a postgres:// URL`},
		{"catalog relative", "catalog: c.db\n", `c.yaml:1:1: catalog: "c.db" is not an absolute path`},
		{"s3 endpoint", "s3: {endpoint: 'localhost:7070'}\n", `c.yaml:1:6: s3.endpoint: "localhost:7070" is not an http(s) URL`},
		{"s3 bool", "s3:\n  insecure_tls: yes\n", `c.yaml:2:3: s3.insecure_tls: "yes" is not true or false`},
		{"offsite name missing", "offsites:\n  - url: s3://bucket\n", `c.yaml:2:5: offsites[0].name: missing: every offsite needs a name`},
		{"offsite url missing", "offsites:\n  - name: a\n", `c.yaml:2:5: offsites[0].url: missing: where the copies go (s3://bucket/prefix)`},
		{"offsite lock mode", "offsites:\n  - name: a\n    url: s3://bucket\n    lock: {mode: forever, days: 3}\n", `c.yaml:4:12: offsites[0].lock.mode: "forever" is not a lock mode (governance: admins with the bypass permission may shorten it; compliance: no one can)`},
		{"offsite lock days", "offsites:\n  - name: a\n    url: s3://bucket\n    lock: {mode: Compliance}\n", `c.yaml:4:5: offsites[0].lock.days: missing: a compliance lock needs days > 0`},
		{"offsite lock without mode", "offsites:\n  - name: a\n    url: s3://bucket\n    lock: {days: 3}\n", `c.yaml:4:5: offsites[0].lock.mode: missing: lock days need a mode (governance or compliance)`},
		{"offsite schedule", "offsites:\n  - name: a\n    url: s3://bucket\n    schedule: hourly\n", `c.yaml:4:5: offsites[0].schedule: "hourly" is not a duration (e.g. 90s, 15m, 1h, 7d)`},
		{"offsite names unique", "offsites:\n  - {name: a, url: s3://bucket}\n  - {name: a, url: s3://bucket}\n", `c.yaml:3:6: offsites[1].name: "a" is also the name of offsites[0]: names must be unique`},
		{"server address", "server:\n  address: 8443\n", `c.yaml:2:3: server.address: "8443" is not host:port (e.g. 127.0.0.1:8443)`},
		{"server port", "server:\n  address: 'localhost:https'\n", `c.yaml:2:3: server.address: "https" is not a port number (0 to 65535)`},
		{"server tls half", "server:\n  tls:\n    cert: /c.pem\n", `c.yaml:2:3: server.tls.key: missing: the certificate needs its key (or give neither for a generated one)`},
		{"rate", "server:\n  rate_limit: {per_address: -1}\n", `c.yaml:2:16: server.rate_limit.per_address: -1: give a rate above 0 requests/s`},
		{"burst", "server:\n  rate_limit: {burst: 1.5}\n", `c.yaml:2:16: server.rate_limit.burst: "1.5" is not a whole number`},
		{"not a mapping", "server: 127.0.0.1:8443\n", `c.yaml:1:1: server: want a mapping (name: value lines), found "127.0.0.1:8443"`},
		{"process", "guard: {process: stop}\n", `c.yaml:1:9: guard.process: "stop" is not a process action (freeze, kill, none)`},
		{"window", "guard:\n  window: 0s\n", `c.yaml:2:3: guard.window: the window must be longer than 0 (default 2m)`},
		{"negative window", "guard:\n  window: -2m\n", `c.yaml:2:3: guard.window: "-2m": a duration may not be negative`},
		{"thresholds increase", "guard:\n  thresholds:\n    critical: 5\n", `c.yaml:3:5: guard.thresholds.critical: 5 must be above major (6)`},
		{"threshold type", "guard:\n  thresholds: {major: [6]}\n", `c.yaml:2:16: guard.thresholds.major: want a single value, found a list`},
		{"severity", "guard:\n  respond:\n    gate: high\n", `c.yaml:3:5: guard.respond.gate: "high" is not a severity (warning, major, critical)`},
		{"webhook scheme", "alerts:\n  webhooks:\n    - ftp://hooks.example/T0/secret\n", `c.yaml:3:7: alerts.webhooks[0]: "ftp://hooks.example/…" is not an http(s) URL`},
		{"webhook unparsable", "alerts:\n  webhooks: ['https://h/%zz-secret']\n", `c.yaml:2:14: alerts.webhooks[0]: not a valid http(s) URL (not shown: it may hold a secret)`},
		{"webhooks not a list", "alerts:\n  webhooks: https://h/x\n", `c.yaml:2:3: alerts.webhooks: want a list ([a, b] or lines starting with -), found "https://h/…"`},
		{"dataset name missing", "datasets:\n  - path: /d\n", `c.yaml:2:5: datasets[0].name: missing: every dataset needs a name`},
		{"dataset name rule", "datasets:\n  - {name: -x, path: /d}\n", `c.yaml:2:6: datasets[0].name: "-x" is not a valid dataset name: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`},
		{"dataset names unique", "datasets:\n  - {name: x, path: /a}\n  - {name: x, path: /b}\n", `c.yaml:3:6: datasets[1].name: "x" is also the name of datasets[0]: names must be unique`},
		{"dataset path missing", "datasets:\n  - name: x\n", `c.yaml:2:5: datasets[0].path: missing: every dataset needs the directory it protects`},
		{"dataset path relative", "datasets:\n  - name: x\n    path: data/x\n", `c.yaml:3:5: datasets[0].path: "data/x" is not an absolute path`},
		{"dataset path same", "datasets:\n  - {name: x, path: /d}\n  - {name: y, path: /d/}\n", `c.yaml:3:15: datasets[1].path: "/d" is also the path of datasets[0] ("x")`},
		{"dataset inside another", "datasets:\n  - {name: x, path: /d}\n  - {name: y, path: /d/e}\n", `c.yaml:3:15: datasets[1].path: "/d/e" lies inside datasets[0] ("x") at /d: datasets may not overlap`},
		{"dataset contains another", "datasets:\n  - {name: x, path: /d/e}\n  - {name: y, path: /d}\n", `c.yaml:3:15: datasets[1].path: "/d" contains datasets[0] ("x") at /d/e: datasets may not overlap`},
		{"dataset prefix is no overlap", "datasets:\n  - {name: x, path: /d}\n  - {name: y, path: /de}\n  - {name: z, path: /}\n", `c.yaml:4:15: datasets[2].path: "/" contains datasets[0] ("x") at /d: datasets may not overlap`},
		{"dataset sorted past a sibling", "datasets:\n  - {name: x, path: /a/b}\n  - {name: y, path: /a-b}\n  - {name: z, path: /a}\n", `c.yaml:4:15: datasets[2].path: "/a" contains datasets[0] ("x") at /a/b: datasets may not overlap`},
		{"dataset holds the vault", "vault: /srv/v\ndatasets:\n  - {name: x, path: /srv}\n", `c.yaml:3:15: datasets[0].path: "/srv" overlaps the vault at /srv/v: keep the vault outside every dataset`},
		{"dataset holds the catalog", "catalog: /srv/c.db\ndatasets:\n  - {name: x, path: /srv}\n", `c.yaml:3:15: datasets[0].path: "/srv" contains the catalog /srv/c.db: keep the catalog outside every dataset`},
		{"stage", "datasets:\n  - name: x\n    path: /d\n    stage: trian\n", `c.yaml:4:5: datasets[0].stage: "trian" is not a stage (collect, clean, explore, features, split, train, evaluate, tune, deploy, monitor)`},
		{"unknown writer", "datasets:\n  - name: x\n    path: /d\n    writers: [1001, no-such-user-here]\n", `c.yaml:4:21: datasets[0].writers[1]: no user "no-such-user-here" on this machine (give a uid to name one that is not here)`},
		{"writer uid range", "datasets:\n  - {name: x, path: /d, writers: [-1]}\n", `c.yaml:2:35: datasets[0].writers[0]: "-1" is not a uid (0 to 4294967295)`},
		{"writers empty", "datasets:\n  - {name: x, path: /d, writers: []}\n", `c.yaml:2:25: datasets[0].writers: an empty list: leave writers out to let anyone write, or set frozen: true to let no one`},
		{"frozen", "datasets:\n  - {name: x, path: /d, frozen: 1}\n", `c.yaml:2:25: datasets[0].frozen: "1" is not true or false`},
		{"snapshot every", "datasets:\n  - name: x\n    path: /d\n    snapshot:\n      every: 60\n", `c.yaml:5:7: datasets[0].snapshot.every: "60" is not a duration (e.g. 90s, 15m, 1h, 7d)`},
		{"offsite unknown", "offsites: [{name: primary, url: s3://bucket}]\ndatasets:\n  - {name: x, path: /d, offsite: primray}\n", `c.yaml:3:25: datasets[0].offsite: no offsite named "primray" (did you mean "primary"?)`},
		{"offsite none configured", "datasets:\n  - {name: x, path: /d, offsite: primary}\n", `c.yaml:2:25: datasets[0].offsite: no offsite named "primary" (no offsites are configured)`},
		{"lock days without offsite", "datasets:\n  - {name: x, path: /d, lock_days: 7}\n", `c.yaml:2:25: datasets[0].lock_days: lock days need an offsite: set offsite too`},
		{"lock days on an unlocked offsite", "offsites: [{name: o, url: s3://bucket}]\ndatasets:\n  - {name: x, path: /d, offsite: o, lock_days: 7}\n", `c.yaml:3:37: datasets[0].lock_days: offsite "o" has no lock: set its lock.mode`},
		{"dataset not a mapping", "datasets:\n  - /data/raw\n", `c.yaml:2:5: datasets[0]: want a mapping (name: value lines), found "/data/raw"`},
		{"key not a name", "datasets:\n  - {[a]: b, name: x, path: /d}\n", `c.yaml:2:6: datasets[0]: a key must be a plain name, found a list`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, errs := Parse("c.yaml", []byte(tt.src))
			if len(errs) != 1 {
				t.Fatalf("%d errors, want 1:\n%v", len(errs), errors.Join(errs...))
			}
			if got := errs[0].Error(); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			var e *Error
			if !errors.As(errs[0], &e) {
				t.Errorf("%T is not an *Error", errs[0])
			}
			if cfg != nil {
				t.Error("a Config came back with the errors")
			}
		})
	}
}

func TestUnknownFieldSuggestsTheClosest(t *testing.T) {
	tests := []struct{ src, want string }{
		{"server:\n  adress: x\n", `c.yaml:2:3: server.adress: unknown field (did you mean "address"?)`},
		{"server:\n  rateLimit: {}\n", `c.yaml:2:3: server.rateLimit: unknown field (did you mean "rate_limit"?)`},
		{"dataset: []\n", `c.yaml:1:1: dataset: unknown field (did you mean "datasets"?)`},
		{"datasets:\n  - {name: x, path: /d, lockdays: 3}\n", `c.yaml:2:25: datasets[0].lockdays: unknown field (did you mean "lock_days"?)`},
		{"datasets:\n  - {name: x, path: /d, stgae: clean}\n", `c.yaml:2:25: datasets[0].stgae: unknown field (did you mean "stage"?)`},
		{"guard:\n  Canaries: true\n", `c.yaml:2:3: guard.Canaries: unknown field (did you mean "canaries"?)`},
		{"guard:\n  respond: {alert: major}\n", `c.yaml:2:13: guard.respond.alert: unknown field (known here: snapshot, gate, lockout)`},
		{"policy: {}\n", `c.yaml:1:1: policy: unknown field (known here: vault, s3, catalog, offsites, server, guard, alerts, datasets)`},
	}
	for _, tt := range tests {
		_, errs := Parse("c.yaml", []byte(tt.src))
		if len(errs) != 1 || errs[0].Error() != tt.want {
			t.Errorf("%q:\ngot  %v\nwant %s", tt.src, errs, tt.want)
		}
	}
}

func TestEveryMistakeIsReportedInFileOrder(t *testing.T) {
	src := `vault: relative
server:
  adress: 127.0.0.1:1
guard:
  process: stop
datasets:
  - name: a
    path: /srv/a
    stage: trian
  - name: a
    path: /srv/a/b
    writers: [no-such-user-here]
`
	want := []string{
		`c.yaml:1:1: vault: "relative" is not an absolute path`,
		`c.yaml:3:3: server.adress: unknown field (did you mean "address"?)`,
		`c.yaml:5:3: guard.process: "stop" is not a process action (freeze, kill, none)`,
		`c.yaml:9:5: datasets[0].stage: "trian" is not a stage (collect, clean, explore, features, split, train, evaluate, tune, deploy, monitor)`,
		`c.yaml:10:5: datasets[1].name: "a" is also the name of datasets[0]: names must be unique`,
		`c.yaml:11:5: datasets[1].path: "/srv/a/b" lies inside datasets[0] ("a") at /srv/a: datasets may not overlap`,
		`c.yaml:12:15: datasets[1].writers[0]: no user "no-such-user-here" on this machine (give a uid to name one that is not here)`,
	}
	_, errs := Parse("c.yaml", []byte(src))
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatal(d)
	}
}

func TestOneBadValueGivesOneError(t *testing.T) {
	// A name that fails to decode is not reported missing as well.
	_, errs := Parse("c.yaml", []byte("datasets:\n  - {name: [x], path: /d}\n  - 7\n"))
	if len(errs) != 2 {
		t.Fatalf("want 2 errors, got:\n%v", errors.Join(errs...))
	}
}

func TestTooManyMistakesAreCut(t *testing.T) {
	var b strings.Builder
	b.WriteString("datasets:\n")
	for i := range 2 * maxErrors {
		fmt.Fprintf(&b, "  - {name: d%d, path: /d%d, stage: nope}\n", i, i)
	}
	_, errs := Parse("c.yaml", []byte(b.String()))
	if len(errs) != maxErrors+1 || !strings.Contains(errs[maxErrors].Error(), "more mistakes not shown") {
		t.Fatalf("%d errors, last %v", len(errs), errs[len(errs)-1])
	}
}

func TestManyDatasetsAreCheckedQuickly(t *testing.T) {
	var b strings.Builder
	b.WriteString("datasets:\n")
	const n = 20000
	for i := range n {
		fmt.Fprintf(&b, "  - {name: d%d, path: /data/d%d}\n", i, i)
	}
	fmt.Fprintf(&b, "  - {name: last, path: /data/d7/inner}\n")
	start := time.Now()
	_, errs := Parse("c.yaml", []byte(b.String()))
	want := fmt.Sprintf(`c.yaml:%d:18: datasets[%d].path: "/data/d7/inner" lies inside datasets[7] ("d7") at /data/d7: datasets may not overlap`, n+2, n)
	if len(errs) != 1 || errs[0].Error() != want {
		t.Fatalf("got %v\nwant %s", errs, want)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("took %v", took)
	}
}

func TestMergeKeysShareAPolicy(t *testing.T) {
	cfg, errs := Parse("c.yaml", []byte(`
datasets:
  - &base {name: a, path: /a, stage: clean, frozen: true, snapshot: {every: 2h}}
  - <<: *base
    name: b
    path: /b
    frozen: false
`))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	b := cfg.Datasets[1]
	if b.Name != "b" || b.Path != "/b" || b.Stage != "clean" || b.Frozen || b.Snapshot.Every != 2*time.Hour {
		t.Fatalf("merged dataset %+v", b)
	}
}

func TestAliasBombIsRefusedCheaply(t *testing.T) {
	src := `x:
  - &a {<<: [{name: n}], path: /p}
  - &b {<<: [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]}
  - &c {<<: [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]}
  - &d {<<: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]}
  - &e {<<: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]}
  - &f {<<: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]}
  - &g {<<: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]}
  - &h {<<: [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]}
datasets: [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]
`
	start := time.Now()
	_, errs := Parse("c.yaml", []byte(src))
	if len(errs) == 0 {
		t.Fatal("no error")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("took %v", took)
	}
}

func TestLoadJoinsEveryMistake(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "custody.yaml")
	if err := os.WriteFile(path, []byte("vault: v\nguard: {process: stop}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	want := path + `:1:1: vault: "v" is not an absolute path` + "\n" +
		path + `:2:9: guard.process: "stop" is not a process action (freeze, kill, none)`
	if err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}

	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}

	if err := os.WriteFile(path, Example(), 0o600); err != nil {
		t.Fatal(err)
	}
	if cfg, err := Load(path); err != nil || len(cfg.Datasets) != 10 {
		t.Fatalf("example: %v", err)
	}
}

func TestWebhookSecretIsNeverPrinted(t *testing.T) {
	const secret = "T0/B0/s3cr3t"
	cfg, errs := Parse("c.yaml", []byte("alerts:\n  webhooks: ['https://hooks.example/"+secret+"?token=s3cr3t']\n"))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		if s := fmt.Sprintf(verb, cfg); strings.Contains(s, "s3cr3t") {
			t.Errorf("%s shows the secret: %s", verb, s)
		}
	}
	if got := string(cfg.Alerts.Webhooks[0]); !strings.Contains(got, secret) {
		t.Errorf("string(w) = %q lost the URL", got)
	}
	_, errs = Parse("c.yaml", []byte("alerts:\n  webhooks: ['ftp://u:s3cr3t@hooks.example/"+secret+"']\n"))
	if len(errs) != 1 || strings.Contains(errs[0].Error(), "s3cr3t") {
		t.Errorf("error shows the secret: %v", errs)
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"0", 0, false},
		{"90s", 90 * time.Second, false},
		{"1h30m", 90 * time.Minute, false},
		{"7d", 7 * 24 * time.Hour, false},
		{"1d12h", 36 * time.Hour, false},
		{"0d", 0, false},
		{"", 0, true},
		{"d", 0, true},
		{"7", 0, true},
		{"1.5d", 0, true},
		{"-1d", 0, true},
		{"1d-1h", 0, true},
		{"-5m", 0, true},
		{"1w", 0, true},
		{"1d1d", 0, true},
		{"99999999d", 0, true},
		{"106751d23h", 2562047 * time.Hour, false},
		{"106751d24h", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}
