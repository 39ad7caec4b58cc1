package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/custodyhq/custody/internal/backend/s3"
)

// nameRule is the CLI's rule for dataset names, used for offsites too.
var nameRule = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

const nameHint = "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"

var (
	processes  = []string{"freeze", "kill", "none"}
	severities = []string{"warning", "major", "critical"}
	lockModes  = []string{"governance", "compliance"}
)

// fillDefaults gives list elements the defaults of the fields the file
// left out; Default covers the rest.
func (d *decoder) fillDefaults(c *Config) {
	for i := range c.Offsites {
		if !d.set[fmt.Sprintf("offsites[%d].schedule", i)] {
			c.Offsites[i].Schedule = defaultPushEvery
		}
	}
	for i := range c.Datasets {
		p := fmt.Sprintf("datasets[%d].snapshot", i)
		if !d.set[p+".every"] {
			c.Datasets[i].Snapshot.Every = defaultSnapshotEvery
		}
		if !d.set[p+".quiet"] {
			c.Datasets[i].Snapshot.Quiet = defaultSnapshotQuiet
		}
	}
}

// check finds the mistakes that decoding cannot: bad values, missing or
// duplicate names, dangling references, overlapping paths. It cleans
// paths, lower-cases lock modes and resolves writers' names on the way.
func (d *decoder) check(c *Config) {
	d.checkVault(c)
	d.checkCatalog(c)
	if c.S3.Endpoint != "" {
		d.checkHTTP("s3.endpoint", c.S3.Endpoint, false)
	}
	d.checkOffsites(c)
	d.checkServer(&c.Server)
	d.checkGuard(&c.Guard)
	for i, w := range c.Alerts.Webhooks {
		d.checkHTTP(fmt.Sprintf("alerts.webhooks[%d]", i), string(w), true)
	}
	d.checkDatasets(c)
}

func (d *decoder) checkVault(c *Config) {
	switch v := c.Vault; {
	case v == "":
	case strings.HasPrefix(v, "s3://"):
		d.checkS3("vault", v)
	case strings.Contains(v, "://"):
		d.errorf("vault", "%s is neither a directory nor an s3:// URL", quote(redactURL(v)))
	case !filepath.IsAbs(v):
		d.errorf("vault", "%s is not an absolute path", quote(v))
	default:
		c.Vault = filepath.Clean(v)
	}
}

func (d *decoder) checkCatalog(c *Config) {
	switch v := c.Catalog; {
	case v == "":
	case strings.HasPrefix(v, "postgres://"), strings.HasPrefix(v, "postgresql://"):
		if u, err := url.Parse(v); err != nil || u.Host == "" {
			d.errorf("catalog", "not a valid postgres:// URL (write it as postgres://user@host:5432/db; not shown: it may hold a password)")
		}
	case strings.Contains(v, "://"):
		d.errorf("catalog", "%s is neither a SQLite file path nor a postgres:// URL", quote(redactURL(v)))
	case !filepath.IsAbs(v):
		d.errorf("catalog", "%s is not an absolute path", quote(v))
	default:
		c.Catalog = filepath.Clean(v)
	}
}

// checkS3 checks an s3://bucket/prefix location.
func (d *decoder) checkS3(path, v string) {
	if u, err := url.Parse(v); err == nil && u.User != nil {
		// s3.ParseURL refuses this too, but would quote the secret.
		d.errorf(path, "credentials do not belong in the URL (not shown); use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or a profile")
		return
	}
	if _, err := s3.ParseURL(v); err != nil {
		d.errorf(path, "%v", err)
	}
}

// checkHTTP checks that v is an http(s) URL with a host; a secret one is
// never shown whole.
func (d *decoder) checkHTTP(path, v string, secret bool) {
	shown := quote(v)
	if secret {
		shown = quote(redactURL(v))
	}
	u, err := url.Parse(v)
	switch {
	case err != nil && secret:
		d.errorf(path, "not a valid http(s) URL (not shown: it may hold a secret)")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		d.errorf(path, "%s is not an http(s) URL", shown)
	}
}

// redactURL keeps a URL's scheme and host and hides the rest, where
// tokens and passwords live.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "…"
	}
	r := u.Scheme + "://" + u.Host
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		r += "/…"
	}
	return r
}

func (d *decoder) checkOffsites(c *Config) {
	seen := map[string]int{}
	for i := range c.Offsites {
		o := &c.Offsites[i]
		p := fmt.Sprintf("offsites[%d]", i)
		d.checkName(p, o.Name, "offsite", seen, i)
		if o.URL == "" {
			d.errorf(p+".url", "missing: where the copies go (s3://bucket/prefix)")
		} else {
			d.checkS3(p+".url", o.URL)
		}
		if o.Endpoint != "" {
			d.checkHTTP(p+".endpoint", o.Endpoint, false)
		}
		o.Lock.Mode = strings.ToLower(o.Lock.Mode)
		switch {
		case o.Lock.Mode != "" && !slices.Contains(lockModes, o.Lock.Mode):
			d.errorf(p+".lock.mode", "%s is not a lock mode (governance: admins with the bypass permission may shorten it; compliance: no one can)", quote(o.Lock.Mode))
		case o.Lock.Days < 0:
			d.errorf(p+".lock.days", "%d: days may not be negative", o.Lock.Days)
		case o.Lock.Mode != "" && o.Lock.Days == 0:
			d.errorf(p+".lock.days", "missing: a %s lock needs days > 0", o.Lock.Mode)
		case o.Lock.Mode == "" && o.Lock.Days > 0:
			d.errorf(p+".lock.mode", "missing: lock days need a mode (governance or compliance)")
		}
	}
}

// checkName checks the name of the i'th element of a list; seen maps the
// names so far to their index.
func (d *decoder) checkName(p, name, what string, seen map[string]int, i int) {
	switch j, dup := seen[name]; {
	case name == "":
		d.errorf(p+".name", "missing: every %s needs a name", what)
	case !nameRule.MatchString(name):
		d.errorf(p+".name", "%s is not a valid %s name: %s", quote(name), what, nameHint)
	case dup:
		d.errorf(p+".name", "%s is also the name of %ss[%d]: names must be unique", quote(name), what, j)
	default:
		seen[name] = i
	}
}

func (d *decoder) checkServer(s *Server) {
	host, port, err := net.SplitHostPort(s.Address)
	_, perr := strconv.ParseUint(port, 10, 16)
	switch {
	case s.Address == "":
		d.errorf("server.address", "empty: give host:port, e.g. 127.0.0.1:8443")
	case err != nil:
		d.errorf("server.address", "%s is not host:port (e.g. 127.0.0.1:8443)", quote(s.Address))
	case perr != nil:
		d.errorf("server.address", "%s is not a port number (0 to 65535)", quote(port))
	case strings.ContainsAny(host, " /"):
		d.errorf("server.address", "%s is not a host name or IP address", quote(host))
	}
	switch {
	case s.TLS.Cert != "" && s.TLS.Key == "":
		d.errorf("server.tls.key", "missing: the certificate needs its key (or give neither for a generated one)")
	case s.TLS.Cert == "" && s.TLS.Key != "":
		d.errorf("server.tls.cert", "missing: the key needs its certificate (or give neither for a generated one)")
	}
	if s.RateLimit.PerToken <= 0 {
		d.errorf("server.rate_limit.per_token", "%v: give a rate above 0 requests/s", s.RateLimit.PerToken)
	}
	if s.RateLimit.PerAddress <= 0 {
		d.errorf("server.rate_limit.per_address", "%v: give a rate above 0 requests/s", s.RateLimit.PerAddress)
	}
	if s.RateLimit.Burst < 1 {
		d.errorf("server.rate_limit.burst", "%d: the burst must be at least 1", s.RateLimit.Burst)
	}
}

func (d *decoder) checkGuard(g *Guard) {
	if !slices.Contains(processes, g.Process) {
		d.errorf("guard.process", "%s is not a process action (%s)", quote(g.Process), strings.Join(processes, ", "))
	}
	if g.Window <= 0 {
		d.errorf("guard.window", "the window must be longer than 0 (default 2m)")
	}
	t := g.Thresholds
	switch {
	case t.Warning < 1:
		d.errorf("guard.thresholds.warning", "%d: thresholds must be at least 1", t.Warning)
	case t.Major <= t.Warning:
		d.errorf("guard.thresholds.major", "%d must be above warning (%d)", t.Major, t.Warning)
	case t.Critical <= t.Major:
		d.errorf("guard.thresholds.critical", "%d must be above major (%d)", t.Critical, t.Major)
	}
	for _, r := range []struct{ name, sev string }{
		{"snapshot", g.Respond.Snapshot}, {"gate", g.Respond.Gate}, {"lockout", g.Respond.Lockout},
	} {
		if !slices.Contains(severities, r.sev) {
			d.errorf("guard.respond."+r.name, "%s is not a severity (%s)", quote(r.sev), strings.Join(severities, ", "))
		}
	}
}

func (d *decoder) checkDatasets(c *Config) {
	offsites := map[string]*Offsite{}
	var offsiteNames []string
	for i := range c.Offsites {
		offsites[c.Offsites[i].Name] = &c.Offsites[i]
		offsiteNames = append(offsiteNames, c.Offsites[i].Name)
	}
	seen := map[string]int{}
	var usable []int // datasets whose paths can be compared
	for i := range c.Datasets {
		ds := &c.Datasets[i]
		p := fmt.Sprintf("datasets[%d]", i)
		d.checkName(p, ds.Name, "dataset", seen, i)
		if d.checkPath(c, p, ds) {
			usable = append(usable, i)
		}
		if ds.Stage != "" && !slices.Contains(Stages, ds.Stage) {
			d.errorf(p+".stage", "%s is not a stage (%s)", quote(ds.Stage), strings.Join(Stages, ", "))
		}
		d.checkWriters(p, ds)
		if ds.Offsite != "" && offsites[ds.Offsite] == nil {
			msg := "no offsites are configured"
			if s := suggest(ds.Offsite, offsiteNames); s != "" {
				msg = fmt.Sprintf("did you mean %q?", s)
			} else if len(offsiteNames) > 0 {
				msg = "offsites: " + strings.Join(offsiteNames, ", ")
			}
			d.errorf(p+".offsite", "no offsite named %s (%s)", quote(ds.Offsite), msg)
		}
		switch o := offsites[ds.Offsite]; {
		case ds.LockDays < 0:
			d.errorf(p+".lock_days", "%d: days may not be negative", ds.LockDays)
		case ds.LockDays > 0 && ds.Offsite == "":
			d.errorf(p+".lock_days", "lock days need an offsite: set offsite too")
		case ds.LockDays > 0 && o != nil && o.Lock.Mode == "":
			d.errorf(p+".lock_days", "offsite %s has no lock: set its lock.mode", quote(o.Name))
		}
	}
	d.checkOverlaps(c, usable)
}

// checkPath checks and cleans ds.Path and keeps it apart from the vault
// and the catalog; false if it cannot be compared with other paths.
func (d *decoder) checkPath(c *Config, p string, ds *Dataset) bool {
	pp := p + ".path"
	switch {
	case ds.Path == "":
		d.errorf(pp, "missing: every dataset needs the directory it protects")
		return false
	case !filepath.IsAbs(ds.Path):
		d.errorf(pp, "%s is not an absolute path", quote(ds.Path))
		return false
	}
	ds.Path = filepath.Clean(ds.Path)
	if c.Vault != "" && filepath.IsAbs(c.Vault) && (within(ds.Path, c.Vault) || within(c.Vault, ds.Path)) {
		d.errorf(pp, "%s overlaps the vault at %s: keep the vault outside every dataset", quote(ds.Path), c.Vault)
	}
	if c.Catalog != "" && filepath.IsAbs(c.Catalog) && within(ds.Path, c.Catalog) {
		d.errorf(pp, "%s contains the catalog %s: keep the catalog outside every dataset", quote(ds.Path), c.Catalog)
	}
	return true
}

// checkOverlaps reports datasets at the same path or inside another, on
// whichever comes later in the file. Sorted by path+"/", a directory comes
// just before everything inside it, so one pass with a stack of the
// enclosing paths finds every overlap without comparing all pairs.
func (d *decoder) checkOverlaps(c *Config, usable []int) {
	key := func(i int) string {
		if p := c.Datasets[i].Path; p != "/" {
			return p + "/"
		}
		return "/"
	}
	slices.SortStableFunc(usable, func(a, b int) int { return strings.Compare(key(a), key(b)) })
	var stack []int
	reported := map[int]bool{}
	for _, i := range usable {
		for len(stack) > 0 && !within(c.Datasets[stack[len(stack)-1]].Path, c.Datasets[i].Path) {
			stack = stack[:len(stack)-1]
		}
		if len(stack) > 0 {
			d.overlap(c, stack[len(stack)-1], i, reported)
		}
		stack = append(stack, i)
	}
}

// overlap reports that dataset in lies inside (or at) dataset out.
func (d *decoder) overlap(c *Config, out, in int, reported map[int]bool) {
	later, earlier := max(out, in), min(out, in)
	if reported[later] {
		return
	}
	reported[later] = true
	pp := fmt.Sprintf("datasets[%d].path", later)
	path, other := c.Datasets[later].Path, c.Datasets[earlier]
	what := fmt.Sprintf("datasets[%d] (%s)", earlier, quote(other.Name))
	switch {
	case path == other.Path:
		d.errorf(pp, "%s is also the path of %s", quote(path), what)
	case later == in:
		d.errorf(pp, "%s lies inside %s at %s: datasets may not overlap", quote(path), what, other.Path)
	default:
		d.errorf(pp, "%s contains %s at %s: datasets may not overlap", quote(path), what, other.Path)
	}
}

// within reports whether p is dir or lies under it; both are clean.
func within(dir, p string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

// checkWriters looks up the writers given by name.
func (d *decoder) checkWriters(p string, ds *Dataset) {
	if ds.Writers != nil && len(ds.Writers) == 0 && d.set[p+".writers"] {
		d.errorf(p+".writers", "an empty list: leave writers out to let anyone write, or set frozen: true to let no one")
	}
	for i := range ds.Writers {
		w := &ds.Writers[i]
		if w.Name == "" {
			continue
		}
		wp := fmt.Sprintf("%s.writers[%d]", p, i)
		u, err := user.Lookup(w.Name)
		var unknown user.UnknownUserError
		switch {
		case errors.As(err, &unknown):
			d.errorf(wp, "no user %s on this machine (give a uid to name one that is not here)", quote(w.Name))
			continue
		case err != nil:
			d.errorf(wp, "looking up user %s: %v", quote(w.Name), err)
			continue
		}
		uid, err := strconv.ParseUint(u.Uid, 10, 32)
		if err != nil {
			d.errorf(wp, "user %s has uid %s, not a number", quote(w.Name), u.Uid)
			continue
		}
		w.UID = uint32(uid)
	}
}
