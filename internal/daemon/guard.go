package daemon

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/custodyhq/custody/internal/audit"
	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/config"
	"github.com/custodyhq/custody/internal/guard"
	"github.com/custodyhq/custody/internal/guard/lockout"
	"github.com/custodyhq/custody/internal/vault"
	"github.com/custodyhq/custody/internal/watch"
)

// GuardOptions tune Guard.
type GuardOptions struct {
	Roots  []Root
	Source watch.Source
	Guard  guard.Options // Datasets, policy, canaries, alerts
	Logger *slog.Logger
	// Ready, if set, is called once everything is in place and events
	// are being read.
	Ready func()
	// Stream, if set, is the audit stream to use, run and stopped by the
	// caller after Guard returns (the daemon's API records requests
	// there too); nil: Guard runs one of its own.
	Stream *audit.Stream
	// Event, if set, sees every event after coalescing (WatchOptions.Event).
	Event func(watch.Event)
	// Rescan, if set, takes the overflow rescans (WatchOptions.Rescan).
	Rescan func(ctx context.Context, r Root, report func(watch.Event)) error
}

// Guard watches the roots like Watch and runs every event through the
// guard, which opens incidents and responds. With a source that
// attributes events (fanotify, as root), lockouts are enforced by a
// fanotify permission group for as long as Guard runs; without one, the
// guard still detects and responds, but locks no one out.
func Guard(ctx context.Context, v *vault.Vault, rec *audit.Recorder, db *catalog.DB, opts GuardOptions) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts.Guard.Logger = log
	paths := make([]string, len(opts.Roots))
	for i, r := range opts.Roots {
		paths[i] = r.Path
	}
	if len(opts.Guard.Datasets) == 0 { // no policies: one dataset per root
		for _, r := range opts.Roots {
			opts.Guard.Datasets = append(opts.Guard.Datasets, guard.Dataset{Name: r.Dataset, Path: r.Path})
		}
	}
	var lock *lockout.Lockout
	if opts.Source.Attributes() {
		var err error
		if lock, err = lockout.New(paths, lockout.Options{Logger: log}); err != nil {
			log.Warn("guard: lockout unavailable; incidents will not lock anyone out", "err", err)
			lock = nil
		}
	}

	// The stream, the lockout and the guard outlive the watch: they
	// finish what it handed them after ctx ends.
	bg := context.WithoutCancel(ctx)
	stream := opts.Stream
	streamCtx, stopStream := context.WithCancel(bg)
	streamDone := make(chan error, 1)
	if stream == nil {
		stream = rec.Stream(audit.StreamOptions{})
		go func() { streamDone <- stream.Run(streamCtx) }()
	} else {
		streamDone <- nil
	}

	var wg sync.WaitGroup
	var locker guard.Locker
	var stopper guard.Stopper
	lockCtx, stopLock := context.WithCancel(bg)
	lockDone := make(chan error, 1)
	if lock != nil {
		locker, stopper = lock, lockout.Stop
		wg.Go(func() { lockDone <- lock.Run(lockCtx) })
	} else {
		lockDone <- nil
	}
	gd := guard.New(v, db, stream, locker, stopper, opts.Guard)
	guardDone := make(chan error, 1)
	wg.Go(func() { guardDone <- gd.Run(bg) })

	if opts.Ready != nil {
		opts.Ready()
	}
	err := Watch(ctx, v, rec, WatchOptions{Roots: opts.Roots, Source: opts.Source, Logger: log, Index: db,
		Stream: stream, Observe: gd.Observe, Event: opts.Event, Rescan: opts.Rescan})
	gd.Close()
	gerr := <-guardDone
	stopLock()
	lerr := <-lockDone
	wg.Wait()
	stopStream()
	serr := <-streamDone
	if errors.Is(err, ctx.Err()) {
		err = nil
	}
	if errors.Is(lerr, context.Canceled) {
		lerr = nil
	}
	return errors.Join(err, gerr, lerr, serr)
}

// GuardConfig is the guard's options for datasets, with the thresholds,
// responses and alerts of cfg.
func GuardConfig(cfg *config.Config, datasets []config.Dataset) guard.Options {
	gc := cfg.Guard
	opts := guard.Options{
		Thresholds: guard.Thresholds{Window: gc.Window, Warning: gc.Thresholds.Warning, Major: gc.Thresholds.Major, Critical: gc.Thresholds.Critical},
		Policy: guard.Policy{Process: gc.Process, Snapshot: guard.ParseSeverity(gc.Respond.Snapshot),
			Gate: guard.ParseSeverity(gc.Respond.Gate), Lockout: guard.ParseSeverity(gc.Respond.Lockout)}}
	for _, d := range datasets {
		opts.Datasets = append(opts.Datasets, guard.Dataset{Name: d.Name, Path: d.Path, Frozen: d.Frozen, Writers: d.WriterUIDs()})
	}
	var alerts guard.Alerters
	for _, w := range cfg.Alerts.Webhooks {
		alerts = append(alerts, guard.Webhook{URL: string(w)})
	}
	if cfg.Alerts.Syslog {
		alerts = append(alerts, guard.Syslog{})
	}
	if len(alerts) > 0 {
		opts.Alert = alerts // a nil Alerters in the interface would not be nil
	}
	return opts
}
