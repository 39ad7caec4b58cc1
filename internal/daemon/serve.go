package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/custodyhq/custody/internal/audit"
	"github.com/custodyhq/custody/internal/backend/s3"
	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/config"
	"github.com/custodyhq/custody/internal/guard"
	"github.com/custodyhq/custody/internal/guard/detect"
	"github.com/custodyhq/custody/internal/ledger"
	"github.com/custodyhq/custody/internal/offsite"
	"github.com/custodyhq/custody/internal/schedule"
	"github.com/custodyhq/custody/internal/server"
	"github.com/custodyhq/custody/internal/server/tlscert"
	"github.com/custodyhq/custody/internal/snapshot"
	"github.com/custodyhq/custody/internal/vault"
	"github.com/custodyhq/custody/internal/watch"
)

// ServeOptions configure Serve.
type ServeOptions struct {
	// Config holds the datasets, offsites, server, guard and alert
	// settings, with defaults applied (config.Load or config.Default).
	Config *config.Config
	// NewSource makes the source that watches the datasets' trees. Serve
	// calls it once the canaries are in place, so that placing them is
	// no event (inotify cannot tell custody's writes from anyone's).
	NewSource func(paths []string) (watch.Source, error)
	// StateDir keeps the daemon's own files: the self-signed certificate
	// and what restore jobs write.
	StateDir string
	// Listener, if set, is used instead of listening on
	// Config.Server.Address (tests pass 127.0.0.1:0 ones).
	Listener net.Listener
	Logger   *slog.Logger
	// Ready, if set, is called once the API answers and the datasets are
	// watched.
	Ready func(ServeInfo)
}

// ServeInfo is what a client needs to reach the daemon.
type ServeInfo struct {
	Watcher     string // the source's name: fanotify or inotify
	Attributes  bool   // whether events name who made them
	URL         string // https://host:port
	Fingerprint string // SHA-256 of the server's certificate
	CertFile    string // the self-signed certificate, "" when one was given
}

// Serve is the daemon of `custody protect` and `custody serve`: it takes a
// baseline version of every dataset that has none, watches and guards the
// datasets, snapshots them on schedule and after changes go quiet, pushes
// to the offsites on schedule unless the gate is closed, and answers the
// HTTPS API, until ctx ends. Everything it does is in the ledger. A
// restarted Serve resumes the schedule from the catalog.
func Serve(ctx context.Context, v *vault.Vault, rec *audit.Recorder, db *catalog.DB, opts ServeOptions) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg := opts.Config
	if len(cfg.Datasets) == 0 {
		return errors.New("serve: no datasets to protect")
	}
	for _, d := range cfg.Datasets {
		if fi, err := os.Stat(d.Path); err != nil || !fi.IsDir() {
			return fmt.Errorf("serve: dataset %s: %s is not a directory", d.Name, d.Path)
		}
	}
	// The listener first: a port in use fails before anything else runs.
	ln := opts.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.Server.Address); err != nil {
			return fmt.Errorf("serve: listen on %s: %w (choose another address: server.address in the config, or --address)", cfg.Server.Address, err)
		}
	}
	defer ln.Close()
	cert, info, err := serverCert(cfg.Server, opts.StateDir, ln.Addr())
	if err != nil {
		return err
	}

	bg := context.WithoutCancel(ctx)
	stream := rec.Stream(audit.StreamOptions{})
	streamCtx, stopStream := context.WithCancel(bg)
	streamDone := make(chan error, 1)
	go func() { streamDone <- stream.Run(streamCtx) }()
	err = serve(ctx, v, rec, db, opts, stream, ln, cert, info, log)
	stopStream()
	return errors.Join(err, <-streamDone)
}

// serverCert is the configured certificate, or the self-signed one kept
// in stateDir (made on first start).
func serverCert(sc config.Server, stateDir string, addr net.Addr) (tls.Certificate, ServeInfo, error) {
	info := ServeInfo{URL: "https://" + addr.String()}
	if sc.TLS.Cert != "" {
		cert, err := tlscert.Load(sc.TLS.Cert, sc.TLS.Key)
		if err != nil {
			return cert, info, fmt.Errorf("serve: %w", err)
		}
		info.Fingerprint = tlscert.Fingerprint(cert)
		return cert, info, nil
	}
	host, _, _ := net.SplitHostPort(sc.Address)
	dir := filepath.Join(stateDir, "tls")
	cert, _, err := tlscert.SelfSigned(dir, []string{host})
	if err != nil {
		return cert, info, fmt.Errorf("serve: the self-signed certificate: %w", err)
	}
	info.Fingerprint, info.CertFile = tlscert.Fingerprint(cert), filepath.Join(dir, "cert.pem")
	return cert, info, nil
}

func serve(ctx context.Context, v *vault.Vault, rec *audit.Recorder, db *catalog.DB, opts ServeOptions, stream *audit.Stream,
	ln net.Listener, cert tls.Certificate, info ServeInfo, log *slog.Logger) error {
	cfg := opts.Config
	metrics := server.NewMetrics()
	snap := &snapshotter{v: v, db: db, stream: stream, metrics: metrics, log: log, paths: map[string]config.Dataset{}, locks: map[string]*sync.Mutex{}}
	for _, d := range cfg.Datasets {
		snap.paths[d.Name], snap.locks[d.Name] = d, &sync.Mutex{}
	}
	// Canaries first, so that every version holds them and none of them
	// looks like a change.
	var canaries []string
	if cfg.Guard.Enabled && cfg.Guard.Canaries {
		for _, d := range cfg.Datasets {
			c, err := detect.PlaceCanaries(d.Path, 3)
			if err != nil {
				return fmt.Errorf("serve: placing canaries in %s: %w", d.Path, err)
			}
			canaries = append(canaries, c...)
		}
	}
	// A recovery point for every dataset before the guard judges anything.
	var resumed []string // datasets versioned before this start
	for _, d := range cfg.Datasets {
		vs, err := db.Versions(ctx, d.Name)
		if err != nil {
			return err
		}
		if len(vs) > 0 {
			resumed = append(resumed, d.Name)
			continue
		}
		if _, err := snap.snapshot(ctx, d.Name, "baseline"); err != nil {
			return err
		}
	}
	push := &pusher{v: v, db: db, stream: stream, metrics: metrics}
	for _, o := range cfg.Offsites {
		if err := ensureOffsite(ctx, db, stream, o); err != nil {
			return err
		}
	}

	sched, err := schedule.New(scheduleOptions(ctx, v, db, cfg, snap, push, log))
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	var ready atomic.Bool
	var sets []server.Dataset
	for _, d := range cfg.Datasets {
		sets = append(sets, server.Dataset{Name: d.Name, Path: d.Path, Stage: d.Stage})
	}
	srv, err := server.New(server.Options{Vault: v, DB: db, Recorder: rec, Entries: stream, Datasets: sets,
		Snapshot: func(ctx context.Context, dataset, reason string) (string, error) {
			return snap.snapshot(ctx, dataset, reason)
		},
		Push: push.push, Incidents: guard.Manager{Vault: v, DB: db},
		Schedule: func() []schedule.DatasetStatus {
			ds, _ := sched.Status()
			return ds
		},
		RestoreDir: filepath.Join(opts.StateDir, "restores"), RateLimit: cfg.Server.RateLimit, Metrics: metrics, Logger: log,
		Ready: func() error {
			if !ready.Load() {
				return errors.New("starting: the datasets are not watched yet")
			}
			return nil
		}})
	if err != nil {
		return err
	}

	byRoot := map[string]string{}
	var roots []Root
	var paths []string
	for _, d := range cfg.Datasets {
		byRoot[d.Path] = d.Name
		roots = append(roots, Root{Path: d.Path, Dataset: d.Name})
		paths = append(paths, d.Path)
	}
	src, err := opts.NewSource(paths)
	if err != nil {
		return err
	}
	info.Watcher, info.Attributes = src.Name(), src.Attributes()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 3)
	wg.Go(func() {
		errs[0] = srv.Serve(ctx, ln, tlscert.ServerConfig(cert))
		cancel()
	})
	wg.Go(func() {
		errs[1] = sched.Run(ctx)
		cancel()
	})
	onEvent := func(e watch.Event) {
		n := max(e.Count, 1)
		metrics.Events(n)
		switch e.Kind {
		case watch.Overflow:
			metrics.Overflow()
			sched.Overflowed(byRoot[e.Root])
		case watch.OpenDenied:
		default:
			sched.Changed(byRoot[e.Root])
		}
	}
	watching := make(chan struct{})
	onReady := func() {
		ready.Store(true)
		close(watching)
		if opts.Ready != nil {
			opts.Ready(info)
		}
	}
	// What changed while no daemon watched: once the watch runs, a
	// version of each resumed dataset, its differences in the ledger.
	wg.Go(func() {
		select {
		case <-watching:
		case <-ctx.Done():
			return
		}
		for _, name := range resumed {
			if err := snap.catchUp(ctx, name); err != nil && ctx.Err() == nil {
				log.Error("catch-up snapshot failed; the schedule will take the next one", "dataset", name, "err", err)
			}
		}
	})
	wg.Go(func() {
		errs[2] = watchOrGuard(ctx, v, rec, db, cfg, src, roots, canaries, stream, snap, onEvent, onReady, log)
		cancel()
	})
	wg.Wait()
	if errors.Is(errs[1], context.Canceled) {
		errs[1] = nil
	}
	return errors.Join(errs...)
}

// watchOrGuard runs the guard over roots, or only the watch when the
// guard is disabled.
func watchOrGuard(ctx context.Context, v *vault.Vault, rec *audit.Recorder, db *catalog.DB, cfg *config.Config, src watch.Source,
	roots []Root, canaries []string, stream *audit.Stream, snap *snapshotter, onEvent func(watch.Event), onReady func(), log *slog.Logger) error {
	if !cfg.Guard.Enabled {
		onReady()
		err := Watch(ctx, v, rec, WatchOptions{Roots: roots, Source: src, Logger: log, Index: db, Stream: stream, Event: onEvent, Rescan: snap.rescan})
		if errors.Is(err, ctx.Err()) {
			err = nil
		}
		return err
	}
	gopts := GuardConfig(cfg, cfg.Datasets)
	gopts.Canaries = canaries
	return Guard(ctx, v, rec, db, GuardOptions{Roots: roots, Source: src, Guard: gopts, Logger: log, Ready: onReady, Stream: stream, Event: onEvent, Rescan: snap.rescan})
}

// scheduleOptions builds the scheduler's plan from the config, resuming
// from the catalog's newest version and last push times.
func scheduleOptions(ctx context.Context, v *vault.Vault, db *catalog.DB, cfg *config.Config, snap *snapshotter, push *pusher, log *slog.Logger) schedule.Options {
	so := schedule.Options{Logger: log,
		Snapshot: func(ctx context.Context, dataset, reason string) error {
			_, err := snap.snapshot(ctx, dataset, reason)
			return err
		},
		Push: func(ctx context.Context, name string) error {
			_, err := push.push(ctx, name)
			return err
		},
	}
	last := map[string]time.Time{}
	for _, d := range cfg.Datasets {
		so.Datasets = append(so.Datasets, schedule.Dataset{Name: d.Name, Every: d.Snapshot.Every, Quiet: d.Snapshot.Quiet})
		if vs, err := db.Versions(ctx, d.Name); err == nil && len(vs) > 0 {
			last[d.Name] = slices.MaxFunc(vs, func(a, b catalog.Version) int { return a.Time.Compare(b.Time) }).Time
		}
	}
	lastPush := map[string]time.Time{}
	for _, o := range cfg.Offsites {
		so.Offsites = append(so.Offsites, schedule.Offsite{Name: o.Name, Every: o.Schedule})
		if rec, err := db.Offsite(ctx, o.Name); err == nil {
			if st, err := offsite.GetStatus(ctx, rec, v.Backend(), db, time.Now()); err == nil {
				lastPush[o.Name] = st.LastPush
				if !st.LastPush.IsZero() {
					snap.metrics.PushedAt(o.Name, st.LastPush)
				}
			}
		}
	}
	so.LastSnapshot = func(d string) time.Time { return last[d] }
	so.LastPush = func(o string) time.Time { return lastPush[o] }
	return so
}

// snapshotter takes the daemon's versions, one at a time per dataset,
// indexes and records them.
type snapshotter struct {
	v       *vault.Vault
	db      *catalog.DB
	stream  *audit.Stream
	metrics *server.Metrics
	log     *slog.Logger
	paths   map[string]config.Dataset
	locks   map[string]*sync.Mutex
}

// snapshot takes a version of dataset and returns its id. Unless a
// person asked for it (reason "requested by ..."), a snapshot of an
// unchanged tree saves none and returns the newest version's id.
func (s *snapshotter) snapshot(ctx context.Context, dataset, reason string) (string, error) {
	d, ok := s.paths[dataset]
	if !ok {
		return "", fmt.Errorf("snapshot: %q is not a protected dataset", dataset)
	}
	mu := s.locks[dataset]
	mu.Lock()
	defer mu.Unlock()
	taken, err := s.take(ctx, d, reason)
	if err != nil {
		return "", err
	}
	return taken.Version.ID.String(), nil
}

// catchUp snapshots dataset after a start and records each difference
// from its previous version as a file.rescan entry: changes made while
// no daemon watched, whose authors are unknown.
func (s *snapshotter) catchUp(ctx context.Context, dataset string) error {
	r := Root{Path: s.paths[dataset].Path, Dataset: dataset}
	return s.recordSince(ctx, r, "catch-up", map[string]string{"while": "not watched"}, nil)
}

// rescan snapshots r's dataset after the watch lost events and records
// each difference from the previous version, handed to report too.
func (s *snapshotter) rescan(ctx context.Context, r Root, report func(watch.Event)) error {
	return s.recordSince(ctx, r, "rescan after the watch lost events", nil, report)
}

// recordSince snapshots r's dataset for reason under the dataset's lock,
// and records each difference from the previous version as a
// file.rescan entry with the details in extra, handed to report if set.
func (s *snapshotter) recordSince(ctx context.Context, r Root, reason string, extra map[string]string, report func(watch.Event)) error {
	d, ok := s.paths[r.Dataset]
	if !ok {
		return fmt.Errorf("%s: %q is not a protected dataset", reason, r.Dataset)
	}
	mu := s.locks[r.Dataset]
	mu.Lock()
	defer mu.Unlock()
	taken, err := s.take(ctx, d, reason)
	if err != nil || taken.Unchanged || taken.Parent == nil {
		return err
	}
	return recordChanges(ctx, s.v, s.stream, r, taken.Parent, taken.Version, extra, report)
}

// take snapshots d, indexes and records the version; the caller holds
// d's lock. Daemon snapshots of an unchanged tree save no version; one a
// person asked for through the API always does.
func (s *snapshotter) take(ctx context.Context, d config.Dataset, reason string) (*snapshot.Taken, error) {
	dataset, start := d.Name, time.Now()
	skip := !strings.HasPrefix(reason, "requested by")
	taken, err := snapshot.Take(ctx, s.v, d.Name, d.Stage, "custody daemon: "+reason, d.Path, snapshot.ArchiveOptions{SkipUnchanged: skip})
	// A snapshot's buffers are garbage now; hand their memory back to
	// the system rather than keep a snapshot-sized heap while idle (the
	// runtime would only after minutes). One collection per snapshot.
	debug.FreeOSMemory()
	var newBytes uint64
	if err == nil {
		newBytes = taken.Version.NewBytes
		if taken.Unchanged {
			s.metrics.Snapshot(dataset, time.Since(start), 0, nil)
			s.log.Debug("snapshot: unchanged", "dataset", dataset, "reason", reason)
			return taken, nil
		}
	}
	s.metrics.Snapshot(dataset, time.Since(start), newBytes, err)
	e := ledger.Entry{Time: time.Now().UTC(), Kind: "snapshot", Actor: audit.Self(), Dataset: dataset, Path: d.Path, Outcome: audit.Outcome(err),
		Detail: map[string]string{"reason": reason}}
	if err == nil {
		e.Version = taken.Version.ID.String()
		if ierr := s.db.PutVersion(ctx, catalog.VersionOf(taken.Version)); ierr != nil {
			s.log.Warn("catalog index not updated; run `custody catalog sync`", "err", ierr)
		}
	}
	if aerr := s.stream.Add(context.WithoutCancel(ctx), e); aerr != nil && err == nil {
		err = fmt.Errorf("snapshot of %s saved but not recorded in the ledger: %w", dataset, aerr)
	}
	if err != nil {
		return nil, err
	}
	return taken, nil
}

// pusher pushes to offsites, one push at a time.
type pusher struct {
	mu      sync.Mutex
	v       *vault.Vault
	db      *catalog.DB
	stream  *audit.Stream
	metrics *server.Metrics
}

func (p *pusher) push(ctx context.Context, name string) (st offsite.PushStats, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	defer func() {
		result := "ok"
		switch {
		case errors.Is(err, catalog.ErrGateClosed):
			result = "paused"
		case err != nil:
			result = "failed"
		default:
			p.metrics.PushedAt(name, time.Now())
		}
		p.metrics.Push(name, result)
	}()
	rec, err := p.db.Offsite(ctx, name)
	if err != nil {
		return st, err
	}
	t, err := offsite.Open(ctx, rec, s3.Keys{}) // a daemon is a process of its own: the AWS environment's
	if err == nil {
		st, err = offsite.Push(ctx, t, p.v.Backend(), p.db, offsite.PushOptions{})
	}
	e := ledger.Entry{Time: time.Now().UTC(), Kind: "offsite.push", Actor: audit.Self(), Outcome: audit.Outcome(err),
		Detail: map[string]string{"offsite": name, "uploaded": fmt.Sprint(st.Uploaded), "bytes": fmt.Sprint(st.Bytes), "extended": fmt.Sprint(st.Extended)}}
	if aerr := p.stream.Add(context.WithoutCancel(ctx), e); aerr != nil && err == nil {
		err = fmt.Errorf("push to %s done but not recorded in the ledger: %w", name, aerr)
	}
	return st, err
}

// ensureOffsite adds a configured offsite the catalog does not know yet,
// as `custody offsite add` does: the bucket is checked and its
// configuration kept as the baseline later audits compare with.
func ensureOffsite(ctx context.Context, db *catalog.DB, stream *audit.Stream, o config.Offsite) error {
	if have, err := db.Offsite(ctx, o.Name); err == nil {
		if have.URL != o.URL {
			return fmt.Errorf("serve: offsite %s is %s in the catalog but %s in the config: rename one", o.Name, have.URL, o.URL)
		}
		return nil
	} else if !errors.Is(err, catalog.ErrNoOffsite) {
		return err
	}
	rec := catalog.Offsite{Name: o.Name, URL: o.URL, Endpoint: o.Endpoint, Region: o.Region, InsecureTLS: o.InsecureTLS, LockDays: o.Lock.Days, Created: time.Now()}
	if o.Lock.Mode != "" {
		m, err := offsite.ParseLockMode(o.Lock.Mode)
		if err != nil {
			return fmt.Errorf("serve: offsite %s: %w", o.Name, err)
		}
		rec.LockMode = m
	}
	rec, err := offsite.Add(ctx, db, rec, s3.Keys{})
	e := ledger.Entry{Time: time.Now().UTC(), Kind: "offsite.add", Actor: audit.Self(), Path: o.URL, Outcome: audit.Outcome(err),
		Detail: map[string]string{"offsite": o.Name, "lock_mode": rec.LockMode, "lock_days": fmt.Sprint(rec.LockDays)}}
	if aerr := stream.Add(ctx, e); aerr != nil && err == nil {
		err = aerr
	}
	if err != nil {
		return fmt.Errorf("serve: offsite %s: %w", o.Name, err)
	}
	return nil
}
