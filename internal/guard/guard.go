// Package guard detects ransomware and malicious manipulation in watched
// datasets, opens incidents, and responds: it snapshots the affected
// datasets and marks their recovery point, locks the actor out, stops its
// processes, closes the zero-trust gate and alerts people. Every action and
// state change is a ledger entry. The detectors themselves live in
// guard/detect, the lockout mechanism in guard/lockout.
package guard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/guard/detect"
	"github.com/custodyhq/custody/internal/ledger"
	"github.com/custodyhq/custody/internal/vault"
	"github.com/custodyhq/custody/internal/watch"
)

// Dataset is a protected tree and its policy.
type Dataset struct {
	Name    string
	Path    string   // absolute
	Frozen  bool     // any write is a signal
	Writers []uint32 // uids allowed to write; empty: everyone
}

// Policy says which severity triggers which response.
type Policy struct {
	Snapshot Severity // snapshot the affected datasets (default Major)
	Gate     Severity // close the zero-trust gate (default Major)
	Lockout  Severity // lock the principal out and stop its processes (default Critical)
	// Process is what happens to the principal's processes on lockout:
	// "freeze" (SIGSTOP, the default: memory kept for forensics), "kill"
	// or "none".
	Process string
}

func (p *Policy) defaults() {
	if p.Snapshot == None {
		p.Snapshot = Major
	}
	if p.Gate == None {
		p.Gate = Major
	}
	if p.Lockout == None {
		p.Lockout = Critical
	}
	if p.Process == "" {
		p.Process = "freeze"
	}
}

// Options configure a Guard.
type Options struct {
	Datasets   []Dataset
	Thresholds Thresholds
	Policy     Policy
	// Canaries are files the guard placed; touching one is decisive.
	Canaries []string
	// Detectors replaces the default set (tests).
	Detectors []detect.Detector
	Alert     Alerter
	Logger    *slog.Logger
}

// Ledger is where the guard records what it does (an audit stream).
type Ledger interface {
	Add(ctx context.Context, e ledger.Entry) error
}

// Locker enforces lockouts (lockout.Lockout).
type Locker interface {
	Lock(uid uint32) error
	Release(uid uint32) error
	Locked() []uint32
}

// Stopper freezes or ends a process if it still belongs to uid
// (lockout.Stop).
type Stopper func(pid int, uid uint32, kill bool) error

// Guard turns events into incidents and responses. Observe feeds it; Run
// does the work on its own goroutine.
type Guard struct {
	v  *vault.Vault
	db *catalog.DB
	// lockoutMark is the catalog's change mark at the last lockout sync.
	lockoutMark string
	led         Ledger
	lock        Locker
	stop        Stopper
	opts        Options
	log         *slog.Logger
	detectors   []detect.Detector
	score       *scorer

	in      chan watch.Event
	stopped chan struct{} // closed when Run returns
	runErr  error         // why, set before stopped closes

	// Owned by Run's goroutine.
	touches   map[principalKey]*touchRing
	incidents map[principalKey]*liveIncident
	allowance map[principalKey]map[string]int // learned; cleared every second

	bg   sync.WaitGroup // snapshots and alerts started by Run
	self string         // this executable: root running it is custody itself
}

// liveIncident is an open incident this guard is handling.
type liveIncident struct {
	id       int64
	severity Severity
	done     map[string]bool // responses taken
	pids     map[int]bool
	files    map[string]catalog.IncidentFile
	pending  []catalog.IncidentFile
	signals  []catalog.IncidentSignal // not stored yet
	datasets map[string]bool
	first    time.Time
	since    time.Time       // earliest event in the incident: recovery points precede it
	located  map[string]bool // datasets whose recovery point was looked up
	locked   bool            // the lockout took effect
}

// New returns a guard. lock and stop may be nil (no lockout possible:
// inotify, or not root); the incident says so.
func New(v *vault.Vault, db *catalog.DB, led Ledger, lock Locker, stop Stopper, opts Options) *Guard {
	opts.Policy.defaults()
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &Guard{
		v: v, db: db, led: led, lock: lock, stop: stop, opts: opts, log: log,
		score:     newScorer(opts.Thresholds),
		in:        make(chan watch.Event, 1<<16),
		stopped:   make(chan struct{}),
		touches:   map[principalKey]*touchRing{},
		incidents: map[principalKey]*liveIncident{},
		allowance: map[principalKey]map[string]int{},
	}
	g.detectors = opts.Detectors
	if g.detectors == nil {
		g.detectors = DefaultDetectors(opts.Datasets, opts.Canaries)
	}
	g.self, _ = os.Executable()
	return g
}

// extensionLearner is a detector that judges extensions against those a
// dataset already holds.
type extensionLearner interface {
	LearnExtensions(dataset string, exts ...string)
}

// maxLearnWalk bounds the names read to learn a dataset's extensions.
const maxLearnWalk = 200_000

// learn tells the detectors which extensions each dataset holds now, so
// that a job's first files of a format the dataset already has are not
// new extensions.
func (g *Guard) learn(ctx context.Context) {
	var learners []extensionLearner
	for _, d := range g.detectors {
		if l, ok := d.(extensionLearner); ok {
			learners = append(learners, l)
		}
	}
	if len(learners) == 0 {
		return
	}
	for _, ds := range g.opts.Datasets {
		exts := map[string]bool{}
		n := 0
		filepath.WalkDir(ds.Path, func(p string, d os.DirEntry, err error) error {
			if err != nil || ctx.Err() != nil {
				return filepath.SkipDir
			}
			if n++; n > maxLearnWalk {
				return filepath.SkipAll
			}
			if !d.IsDir() {
				if e := strings.ToLower(filepath.Ext(d.Name())); e != "" {
					exts[e] = true
				}
			}
			return nil
		})
		list := make([]string, 0, len(exts))
		for e := range exts {
			list = append(list, e)
		}
		for _, l := range learners {
			l.LearnExtensions(ds.Name, list...)
		}
	}
}

// Observe hands an event to the guard. It blocks while the guard is a
// full queue behind, so that no event escapes it, and fails once Run
// has stopped on an error.
func (g *Guard) Observe(ctx context.Context, e watch.Event) error {
	select {
	case g.in <- e:
		return nil
	case <-g.stopped:
		return fmt.Errorf("guard stopped: %w", g.runErr)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close ends the event stream: Run returns once it has handled what was
// queued.
func (g *Guard) Close() { close(g.in) }

// Run handles events until Close, then waits for the responses it
// started. Lockouts recorded in the catalog (by `custody incidents
// contain` or released by `custody lockouts release`) are applied every
// second.
func (g *Guard) Run(ctx context.Context) (err error) {
	defer func() {
		g.runErr = err
		if err == nil {
			g.runErr = errGuardClosed
		}
		close(g.stopped)
	}()
	defer g.bg.Wait()
	g.learn(ctx)
	if err := g.syncLockouts(ctx); err != nil {
		g.log.Warn("guard: reading lockouts", "err", err)
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case e, ok := <-g.in:
			if !ok {
				g.flushFiles(ctx)
				return nil
			}
			if err := g.handle(ctx, e); err != nil {
				return err
			}
		case <-tick.C:
			clear(g.allowance)
			g.flushFiles(ctx)
			if err := g.syncLockouts(ctx); err != nil {
				g.log.Warn("guard: syncing lockouts", "err", err)
			}
		}
	}
}

// handle runs the detectors on one event and responds to what they say.
func (g *Guard) handle(ctx context.Context, e watch.Event) error {
	ds := g.datasetOf(e.Root)
	if ds == nil {
		return nil
	}
	k := keyOf(e.Principal)
	if k.known && k.uid == 0 && g.self != "" && e.Principal.Exe == g.self {
		// custody itself as root: a recovery or restore, audited by the
		// command that does it.
		return nil
	}
	if e.Kind != watch.Overflow && e.Kind != watch.Rescan {
		g.touch(k, ds.Name, e)
	}
	in := detect.Input{Event: e, Dataset: ds.Name}
	if e.Kind == watch.CloseWrite && !e.Dir {
		in.Content = sample(e.Path)
	}
	var sigs []detect.Signal
	for _, d := range g.detectors {
		sigs = append(sigs, d.Observe(in)...)
	}
	if len(sigs) == 0 {
		return nil
	}
	sev := g.score.add(k, e.Time, sigs...)
	inc := g.incidents[k]
	if inc == nil && sev >= Warning {
		if allow := g.allowances(ctx, k); len(allow) > 0 {
			sev = g.score.severityAllowing(k, allow)
		}
	}
	if inc == nil && sev < Warning {
		return nil
	}
	if inc == nil {
		var err error
		if inc, err = g.open(ctx, k, e.Principal, sev); err != nil {
			return err
		}
	} else if err := g.grow(ctx, inc, sev, sigs); err != nil {
		return err
	}
	if e.Principal.PID > 0 {
		inc.pids[e.Principal.PID] = true
	}
	return g.respond(ctx, k, e.Principal, inc)
}

// allowances are what k may do per detector before it counts, learned
// from incidents marked false positives.
func (g *Guard) allowances(ctx context.Context, k principalKey) map[string]int {
	if a, ok := g.allowance[k]; ok {
		return a
	}
	var uid *uint32
	if k.known {
		uid = &k.uid
	}
	a := map[string]int{}
	for _, d := range g.detectors {
		n, err := g.db.Allowance(ctx, uid, d.Name())
		if err != nil {
			g.log.Warn("guard: reading allowances", "err", err)
			break
		}
		if n > 0 {
			a[d.Name()] = n
		}
	}
	g.allowance[k] = a
	return a
}

// sample reads blocks of a file just written; nil when it cannot.
func sample(path string) *detect.Content {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	c, err := detect.Sample(f, fi.Size())
	if err != nil {
		return nil
	}
	return c
}

func (g *Guard) datasetOf(root string) *Dataset {
	for i := range g.opts.Datasets {
		if g.opts.Datasets[i].Path == root {
			return &g.opts.Datasets[i]
		}
	}
	return nil
}

// datasetOfPath is the dataset whose tree holds path.
func (g *Guard) datasetOfPath(path string) *Dataset {
	for i := range g.opts.Datasets {
		d := &g.opts.Datasets[i]
		if path == d.Path || strings.HasPrefix(path, d.Path+string(filepath.Separator)) {
			return d
		}
	}
	return nil
}

// record writes a ledger entry for a guard action.
func (g *Guard) record(ctx context.Context, kind, dataset, path, outcome string, detail map[string]string) error {
	e := ledger.Entry{Time: time.Now().UTC(), Kind: kind, Actor: ledger.Actor{User: "custody-guard", PID: os.Getpid()},
		Dataset: dataset, Path: path, Outcome: outcome, Detail: detail}
	if err := g.led.Add(ctx, e); err != nil {
		return fmt.Errorf("guard: recording %s: %w", kind, err)
	}
	return nil
}

var errGuardClosed = errors.New("the guard was closed")

var errNoLocker = errors.New("lockout is unavailable here (it needs root and fanotify)")
