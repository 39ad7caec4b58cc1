// Package config reads custody.yaml: the vault, catalog, offsites, server,
// guard and alert settings, and the datasets with their stages and policies.
//
// Every mistake in a file is reported with the file, line and column and
// the field path (datasets[2].stage, 0-based indexes), and all of them at
// once, so that `custody config check` can point at each. Unknown fields
// are mistakes too. Example returns a commented configuration for a
// ten-stage ML pipeline.
package config

import (
	_ "embed"
	"errors"
	"os"
	"time"
)

// Stages are the pipeline stages a dataset can be bound to, in pipeline
// order.
var Stages = []string{"collect", "clean", "explore", "features", "split", "train", "evaluate", "tune", "deploy", "monitor"}

// Config is a whole custody.yaml. Fields left out of the file keep the
// values Default gives them.
type Config struct {
	// Vault is where the vault lives: an absolute directory or
	// s3://bucket/prefix. "" means the embedded default under the user's
	// data directory.
	Vault string `yaml:"vault"`
	// S3 says how to reach the vault's bucket when Vault is an s3:// URL.
	S3 S3 `yaml:"s3"`
	// Catalog is the metadata database: an absolute SQLite file path or a
	// postgres:// URL. "" means a SQLite file beside the vault.
	Catalog string `yaml:"catalog"`
	// Offsites are the S3 buckets that hold copies of the vault.
	Offsites []Offsite `yaml:"offsites"`
	// Server is the HTTPS API.
	Server Server `yaml:"server"`
	// Guard is the ransomware and tampering defence.
	Guard Guard `yaml:"guard"`
	// Alerts are where incidents are announced.
	Alerts Alerts `yaml:"alerts"`
	// Datasets are the directory trees under protection.
	Datasets []Dataset `yaml:"datasets"`
}

// S3 is how to reach an S3-compatible server.
type S3 struct {
	// Endpoint is the server's http(s) URL; "" means AWS.
	Endpoint string `yaml:"endpoint"`
	// Region is the bucket's region; "" lets the SDK decide.
	Region string `yaml:"region"`
	// InsecureTLS skips certificate checks (test servers only).
	InsecureTLS bool `yaml:"insecure_tls"`
}

// Offsite is an S3 bucket that receives copies of the vault's objects.
type Offsite struct {
	// Name is how datasets refer to it (required; the dataset name rule).
	Name string `yaml:"name"`
	// URL is s3://bucket or s3://bucket/prefix (required).
	URL string `yaml:"url"`
	// Endpoint is the server's http(s) URL; "" means AWS.
	Endpoint string `yaml:"endpoint"`
	// Region is the bucket's region; "" lets the SDK decide.
	Region string `yaml:"region"`
	// InsecureTLS skips certificate checks (test servers only).
	InsecureTLS bool `yaml:"insecure_tls"`
	// Lock is the Object Lock retention put on every pushed object.
	Lock Lock `yaml:"lock"`
	// Schedule is how often to push (default 1h; 0: only on demand).
	Schedule time.Duration `yaml:"schedule"`
}

// Lock is an S3 Object Lock retention.
type Lock struct {
	// Mode is "governance" (admins with the bypass permission may shorten
	// it) or "compliance" (no one can); "" for no lock. Stored lower-case.
	Mode string `yaml:"mode"`
	// Days is how long each object is locked; required with Mode.
	Days int `yaml:"days"`
}

// Server is the HTTPS API.
type Server struct {
	// Address is host:port to listen on (default 127.0.0.1:8443).
	Address string `yaml:"address"`
	// TLS names the certificate; absent, a self-signed one is generated.
	TLS TLS `yaml:"tls"`
	// RateLimit bounds requests per second.
	RateLimit RateLimit `yaml:"rate_limit"`
}

// TLS names a PEM certificate and key; both or neither.
type TLS struct {
	// Cert is the certificate chain file.
	Cert string `yaml:"cert"`
	// Key is the private key file.
	Key string `yaml:"key"`
}

// RateLimit bounds API requests, answered with 429 and Retry-After beyond.
type RateLimit struct {
	// PerToken is requests/s allowed to one bearer token (default 50).
	PerToken float64 `yaml:"per_token"`
	// PerAddress is requests/s allowed to one client address (default 100).
	PerAddress float64 `yaml:"per_address"`
	// Burst is how many requests may come at once above the rate
	// (default 100).
	Burst int `yaml:"burst"`
}

// Guard configures detection and response.
type Guard struct {
	// Enabled turns the guard on (default true).
	Enabled bool `yaml:"enabled"`
	// Canaries places canary files in the datasets (default true).
	Canaries bool `yaml:"canaries"`
	// Process is what happens to a locked-out principal's processes:
	// "freeze" (SIGSTOP, memory kept for forensics; the default), "kill"
	// or "none".
	Process string `yaml:"process"`
	// Window is how long a signal counts towards a principal's score
	// (default 2m).
	Window time.Duration `yaml:"window"`
	// Thresholds are the scores at which each severity is reached.
	Thresholds Thresholds `yaml:"thresholds"`
	// Respond says from which severity each response is taken.
	Respond Respond `yaml:"respond"`
}

// Thresholds are scores (sums of signal strengths: weak 1, strong 2,
// decisive 4); they must increase from warning to critical.
type Thresholds struct {
	// Warning opens an incident (default 3).
	Warning int `yaml:"warning"`
	// Major is the middle severity (default 6).
	Major int `yaml:"major"`
	// Critical is the highest (default 10).
	Critical int `yaml:"critical"`
}

// Respond maps each response to the lowest severity that triggers it:
// "warning", "major" or "critical".
type Respond struct {
	// Snapshot snapshots the affected datasets (default major).
	Snapshot string `yaml:"snapshot"`
	// Gate closes the zero-trust gate: offsite pushes and destructive
	// steps refuse (default major).
	Gate string `yaml:"gate"`
	// Lockout locks the principal out and stops its processes
	// (default critical).
	Lockout string `yaml:"lockout"`
}

// Alerts are where incidents are announced.
type Alerts struct {
	// Webhooks receive a JSON body per incident change; http(s) URLs.
	Webhooks []Webhook `yaml:"webhooks"`
	// Syslog also logs incidents to the local syslog.
	Syslog bool `yaml:"syslog"`
}

// Webhook is a webhook URL. It often holds a secret in its path or query,
// so it prints as scheme://host/… only; use string(w) to call it.
type Webhook string

// String is the URL without anything that may be a secret.
func (w Webhook) String() string { return redactURL(string(w)) }

// GoString keeps %#v from printing the secret too.
func (w Webhook) GoString() string { return `config.Webhook("` + w.String() + `")` }

// Dataset is a directory tree under protection and its policy.
type Dataset struct {
	// Name is the dataset's name (required): 1-64 letters, digits, '.',
	// '_' or '-', starting with a letter or digit; unique in the file.
	Name string `yaml:"name"`
	// Path is the tree's absolute directory (required); no dataset may lie
	// inside another.
	Path string `yaml:"path"`
	// Stage is the pipeline stage, one of Stages, or "".
	Stage string `yaml:"stage"`
	// Writers are the users allowed to write, as uids or user names;
	// absent means anyone.
	Writers []Writer `yaml:"writers"`
	// Frozen makes any write a guard signal (a finished split, a released
	// model).
	Frozen bool `yaml:"frozen"`
	// Snapshot is when versions are taken.
	Snapshot Schedule `yaml:"snapshot"`
	// Offsite names the offsite the dataset's objects are pushed to; ""
	// for none.
	Offsite string `yaml:"offsite"`
	// LockDays overrides the offsite's lock days for this dataset's
	// objects (0: the offsite's).
	LockDays int `yaml:"lock_days"`
}

// Schedule says when a dataset is snapshotted.
type Schedule struct {
	// Every is the interval of scheduled snapshots (default 1h; 0: none).
	Every time.Duration `yaml:"every"`
	// Quiet snapshots once the tree has been quiet this long after a
	// change (default 5m; 0: never).
	Quiet time.Duration `yaml:"quiet"`
}

// Writer is a user allowed to write to a dataset.
type Writer struct {
	// Name is the user name as written; "" when the file gave a uid.
	Name string
	// UID is the uid, as written or looked up from Name.
	UID uint32
}

// WriterUIDs lists the uids allowed to write to d; nil means anyone.
func (d *Dataset) WriterUIDs() []uint32 {
	if d.Writers == nil {
		return nil
	}
	uids := make([]uint32, len(d.Writers))
	for i, w := range d.Writers {
		uids[i] = w.UID
	}
	return uids
}

// Default is the configuration of an empty file.
func Default() *Config {
	return &Config{
		Server: Server{
			Address:   "127.0.0.1:8443",
			RateLimit: RateLimit{PerToken: 50, PerAddress: 100, Burst: 100},
		},
		Guard: Guard{
			Enabled:    true,
			Canaries:   true,
			Process:    "freeze",
			Window:     2 * time.Minute,
			Thresholds: Thresholds{Warning: 3, Major: 6, Critical: 10},
			Respond:    Respond{Snapshot: "major", Gate: "major", Lockout: "critical"},
		},
	}
}

// Defaults for the elements of lists, applied where the file is silent.
const (
	defaultPushEvery     = time.Hour
	defaultSnapshotEvery = time.Hour
	defaultSnapshotQuiet = 5 * time.Minute
)

// DefaultSnapshot is the snapshot schedule of a dataset the file gives
// none (and of the dataset `custody protect` makes).
func DefaultSnapshot() Schedule {
	return Schedule{Every: defaultSnapshotEvery, Quiet: defaultSnapshotQuiet}
}

// DefaultPushEvery is how often an offsite is pushed to when the file
// does not say.
const DefaultPushEvery = defaultPushEvery

//go:embed example.yaml
var example []byte

// Example is a commented custody.yaml for a ten-stage ML pipeline; it is
// what `custody config example` prints and it parses without errors.
func Example() []byte { return append([]byte(nil), example...) }

// Load reads and checks the file at path. Its error lists every mistake,
// one a line, each as path:line:column: field: what is wrong.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cfg, errs := Parse(path, b)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return cfg, nil
}

// Parse reads and checks b, a file named name (used in messages only).
// It returns every mistake, each an *Error, in file order, and a Config
// only when there is none. User names in writers are looked up on this
// machine.
func Parse(name string, b []byte) (*Config, []error) {
	d := newDecoder(name)
	cfg := Default()
	root, ok := d.document(b)
	if ok {
		d.value(root, cfgValue(cfg), "", mark{root.Line, root.Column})
		d.fillDefaults(cfg)
		d.check(cfg)
	}
	if errs := d.sorted(); len(errs) > 0 {
		return nil, errs
	}
	return cfg, nil
}
