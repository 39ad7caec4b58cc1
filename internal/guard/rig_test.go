package guard

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/guard/detect"
	"github.com/custodyhq/custody/internal/ledger"
	"github.com/custodyhq/custody/internal/testkit"
	"github.com/custodyhq/custody/internal/vault"
	"github.com/custodyhq/custody/internal/vaulttest"
	"github.com/custodyhq/custody/internal/watch"
)

// The guard tests run a real guard on a real vault and SQLite catalog.
// Detectors are scripted (they fire on the paths they are given), and
// the ledger, locker, stopper and alerter are fakes that record calls.

// scripted fires one signal of its strength on each event on a path it
// was given.
type scripted struct {
	name string
	fire map[string]detect.Strength
}

func (d scripted) Name() string { return d.name }

func (d scripted) Observe(in detect.Input) []detect.Signal {
	s, ok := d.fire[in.Event.Path]
	if !ok {
		return nil
	}
	return []detect.Signal{{Detector: d.name, Strength: s, Time: in.Event.Time, Path: in.Event.Path, Reason: "scripted " + d.name}}
}

type fakeLedger struct {
	mu      sync.Mutex
	entries []ledger.Entry
	err     error // Add fails with it
}

func (l *fakeLedger) Add(_ context.Context, e ledger.Entry) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	l.entries = append(l.entries, e)
	return nil
}

// kinds lists the entries' kinds in order, leaving out those in skip.
func (l *fakeLedger) kinds(skip ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.entries {
		if !slices.Contains(skip, e.Kind) {
			out = append(out, e.Kind)
		}
	}
	return out
}

func (l *fakeLedger) of(kind string) []ledger.Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []ledger.Entry
	for _, e := range l.entries {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

type fakeLocker struct {
	mu       sync.Mutex
	locked   map[uint32]bool
	locks    []uint32 // every Lock call
	releases []uint32 // every Release call
	err      error    // Lock fails with it
}

func newFakeLocker(locked ...uint32) *fakeLocker {
	l := &fakeLocker{locked: map[uint32]bool{}}
	for _, u := range locked {
		l.locked[u] = true
	}
	return l
}

func (l *fakeLocker) Lock(uid uint32) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.locks = append(l.locks, uid)
	if l.err != nil {
		return l.err
	}
	l.locked[uid] = true
	return nil
}

func (l *fakeLocker) Release(uid uint32) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.releases = append(l.releases, uid)
	delete(l.locked, uid)
	return nil
}

func (l *fakeLocker) Locked() []uint32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []uint32
	for u := range l.locked {
		out = append(out, u)
	}
	slices.Sort(out)
	return out
}

func (l *fakeLocker) calls() (locks, releases []uint32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.locks), slices.Clone(l.releases)
}

type stopCall struct {
	pid  int
	uid  uint32
	kill bool
}

type fakeStopper struct {
	mu    sync.Mutex
	calls []stopCall
}

func (s *fakeStopper) stop(pid int, uid uint32, kill bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, stopCall{pid, uid, kill})
	return nil
}

func (s *fakeStopper) got() []stopCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

type fakeAlerter struct {
	mu     sync.Mutex
	alerts []Alert
	err    error
}

func (a *fakeAlerter) Alert(_ context.Context, al Alert) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.alerts = append(a.alerts, al)
	return a.err
}

// rig is a vault, a catalog, datasets in a temporary directory, and the
// fakes a guard reports to.
type rig struct {
	t    *testing.T
	ctx  context.Context
	v    *vault.Vault
	db   *catalog.DB
	led  *fakeLedger
	lock *fakeLocker
	stop *fakeStopper
	dir  string
	sets []Dataset
}

// newRig makes datasets named names (the first, "data", when none are
// given), each a directory holding one file.
func newRig(t *testing.T, names ...string) *rig {
	t.Helper()
	if len(names) == 0 {
		names = []string{"data"}
	}
	ctx := t.Context()
	v, _ := vaulttest.New(t)
	db, err := catalog.Open(ctx, filepath.Join(t.TempDir(), "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	r := &rig{t: t, ctx: ctx, v: v, db: db, led: &fakeLedger{}, lock: newFakeLocker(), stop: &fakeStopper{}, dir: t.TempDir()}
	for _, n := range names {
		d := Dataset{Name: n, Path: filepath.Join(r.dir, n)}
		testkit.WriteFiles(t, d.Path, map[string][]byte{"readme.txt": []byte("dataset " + n)})
		r.sets = append(r.sets, d)
	}
	return r
}

// path is rel's absolute path in the dataset named ds.
func (r *rig) path(ds, rel string) string { return filepath.Join(r.dir, ds, rel) }

// guard makes a guard on the rig with the locker and stopper given and
// scripted detectors: fire maps detector name -> dataset-relative path in
// "data" (or "ds:rel") -> strength.
func (r *rig) guard(lock Locker, stop Stopper, opts Options, fire map[string]map[string]detect.Strength) *Guard {
	r.t.Helper()
	if opts.Datasets == nil {
		opts.Datasets = r.sets
	}
	for _, name := range sortedKeys(fire) {
		d := scripted{name: name, fire: map[string]detect.Strength{}}
		for rel, s := range fire[name] {
			d.fire[r.abs(rel)] = s
		}
		opts.Detectors = append(opts.Detectors, d)
	}
	if opts.Detectors == nil {
		opts.Detectors = []detect.Detector{}
	}
	return New(r.v, r.db, r.led, lock, stop, opts)
}

// abs is the path of "rel" in dataset "data", or of "ds:rel" in ds.
func (r *rig) abs(rel string) string {
	if ds, p, ok := strings.Cut(rel, ":"); ok {
		return r.path(ds, p)
	}
	return r.path("data", rel)
}

// ev is an event of kind on rel (see abs) by p at offset at from t0.
func (r *rig) ev(at time.Duration, kind watch.Kind, rel string, p watch.Principal) watch.Event {
	path := r.abs(rel)
	ds := "data"
	if d, _, ok := strings.Cut(rel, ":"); ok {
		ds = d
	}
	return watch.Event{Time: t0.Add(at), Kind: kind, Path: path, Root: filepath.Join(r.dir, ds), Principal: p}
}

// run feeds events to g, closes it and waits for Run to return.
func (r *rig) run(g *Guard, events ...watch.Event) {
	r.t.Helper()
	wait := r.start(g, events...)
	wait()
}

// start runs g and feeds it events; the function it returns closes g and
// waits for Run.
func (r *rig) start(g *Guard, events ...watch.Event) (closeAndWait func()) {
	r.t.Helper()
	done := make(chan error, 1)
	go func() { done <- g.Run(r.ctx) }()
	r.feed(g, events...)
	return func() {
		r.t.Helper()
		g.Close()
		if err := <-done; err != nil {
			r.t.Fatalf("Run: %v", err)
		}
	}
}

func (r *rig) feed(g *Guard, events ...watch.Event) {
	r.t.Helper()
	for _, e := range events {
		if err := g.Observe(r.ctx, e); err != nil {
			r.t.Fatal(err)
		}
	}
}

func (r *rig) incidents() []catalog.Incident {
	r.t.Helper()
	incs, err := r.db.Incidents(r.ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	slices.Reverse(incs) // oldest first
	return incs
}

// only is the one incident in the catalog.
func (r *rig) only() catalog.Incident {
	r.t.Helper()
	incs := r.incidents()
	if len(incs) != 1 {
		r.t.Fatalf("%d incidents, want 1: %+v", len(incs), incs)
	}
	return incs[0]
}

func (r *rig) putVersion(id, ds string, at time.Duration) {
	r.t.Helper()
	if err := r.db.PutVersion(r.ctx, catalog.Version{ID: id, Dataset: ds, Time: t0.Add(at)}); err != nil {
		r.t.Fatal(err)
	}
}

// waitFor polls cond until it holds, for up to testkit.Long.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testkit.WaitFor(t, testkit.Long, what, cond)
}

func principal(uid uint32, user string, pid int) watch.Principal {
	return watch.Principal{UID: &uid, User: user, PID: pid, Exe: "/usr/bin/" + user + "-tool"}
}

var (
	mallory = principal(1001, "mallory", 4242)
	bob     = principal(1002, "bob", 5353)
	root    = principal(0, "root", 1)
	nobody  = watch.Principal{} // unattributed (inotify)
)

func actionOutcomes(inc catalog.Incident, prefix string) []string {
	var out []string
	for _, a := range inc.Actions {
		if strings.HasPrefix(a.Action, prefix) {
			out = append(out, a.Outcome)
		}
	}
	return out
}
