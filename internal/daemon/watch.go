// Package daemon wires the long-running parts together: watch sources to
// the ledger (and, later, the guard), overflow rescans, scheduled
// snapshots and offsite pushes.
package daemon

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/sync/errgroup"

	"github.com/custodyhq/custody/internal/audit"
	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/ledger"
	"github.com/custodyhq/custody/internal/snapshot"
	"github.com/custodyhq/custody/internal/vault"
	"github.com/custodyhq/custody/internal/watch"
)

// Root is a watched tree and the dataset it holds.
type Root struct {
	Path    string // absolute
	Dataset string
}

// WatchOptions tune Watch.
type WatchOptions struct {
	Roots  []Root
	Source watch.Source
	// Window is how long bursts are coalesced (default 100 ms).
	Window time.Duration
	// Event, if set, sees every event after coalescing, in order, one
	// call at a time (the command prints them; the guard will subscribe
	// here).
	Event  func(watch.Event)
	Logger *slog.Logger
	// Observe, if set, sees every event as the source reports it, before
	// coalescing, in order, from one goroutine (the guard: it wants each
	// write at once, not a window later). It may block; the source then
	// waits. An error stops the watch.
	Observe func(context.Context, watch.Event) error
	// Stream, if set, is the audit stream entries go to: its owner runs
	// it and stops it after Watch returns (the guard records its actions
	// there too). nil: Watch runs one of its own.
	Stream *audit.Stream
	// Index, if set, is the catalog that indexes the versions rescans
	// save, as `custody snapshot` indexes its own (the recorder's catalog
	// is not reachable through it).
	Index VersionIndex
	// Rescan, if set, takes the overflow rescans in place of Watch's own:
	// a snapshot of the root and its differences from the last version
	// recorded, each handed to report. The daemon sets it so that a
	// rescan takes the dataset's snapshot lock and stage like its other
	// snapshots, and never forks the dataset's history beside them.
	Rescan func(ctx context.Context, r Root, report func(watch.Event)) error
}

// Watch runs the source until ctx is done: events are coalesced, appended
// to the ledger through an audit stream (checkpoints every second), and
// handed to opts.Event. An overflow is recorded, and the affected tree is
// snapshotted and compared with its last version, so that no change goes
// unrecorded: each difference becomes a rescan event (without a
// principal: the kernel's record of who is lost).
func Watch(ctx context.Context, v *vault.Vault, rec *audit.Recorder, opts WatchOptions) error {
	if opts.Window <= 0 {
		opts.Window = 100 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if event := opts.Event; event != nil {
		var mu sync.Mutex // the recorder and rescans both report
		opts.Event = func(e watch.Event) {
			mu.Lock()
			defer mu.Unlock()
			event(e)
		}
	}
	raw := make(chan watch.Event, 4096)
	merged := make(chan watch.Event, 4096)
	// A root is queued for a rescan at most once at a time, so sends to
	// rescans never block. It leaves the queue when its rescan starts: an
	// overflow during the rescan queues it again.
	rescans := make(chan Root, len(opts.Roots))
	var queuedMu sync.Mutex
	queued := map[string]bool{}
	enqueue := func(r Root) {
		queuedMu.Lock()
		defer queuedMu.Unlock()
		if !queued[r.Path] {
			queued[r.Path] = true
			rescans <- r
		}
	}

	g, gctx := errgroup.WithContext(ctx)
	stream := opts.Stream
	stopStream, streamDone := func() {}, make(chan error, 1)
	if stream == nil {
		// The stream outlives the rest: it drains what they add after ctx ends.
		stream = rec.Stream(audit.StreamOptions{})
		var streamCtx context.Context
		streamCtx, stopStream = context.WithCancel(context.WithoutCancel(ctx))
		go func() { streamDone <- stream.Run(streamCtx) }()
	} else {
		streamDone <- nil
	}

	g.Go(func() error {
		defer close(raw)
		err := opts.Source.Run(gctx, raw)
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	})
	// Coalescing and recording run until the source has stopped and
	// everything it sent is in the ledger: a shutdown loses no event.
	drain := context.WithoutCancel(gctx)
	toCoalesce := raw
	if opts.Observe != nil {
		teed := make(chan watch.Event, 4096)
		toCoalesce = teed
		g.Go(func() error {
			defer close(teed)
			defer func() {
				for range raw { // after a failure, let the source finish
				}
			}()
			for e := range raw {
				if err := opts.Observe(drain, e); err != nil {
					return err
				}
				teed <- e
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(merged)
		return watch.Coalesce(drain, toCoalesce, merged, opts.Window, 65536)
	})
	g.Go(func() error {
		defer close(rescans)
		defer func() {
			for range merged { // after a failure, let the coalescer finish
			}
		}()
		for e := range merged {
			if err := record(drain, stream, opts.Roots, e); err != nil {
				return err
			}
			if opts.Event != nil {
				opts.Event(e)
			}
			if e.Kind == watch.Overflow {
				for _, r := range opts.Roots {
					if r.Path == e.Root || e.Root == "" {
						enqueue(r)
					}
				}
			}
		}
		return nil
	})
	doRescan := opts.Rescan
	if doRescan == nil {
		doRescan = func(ctx context.Context, r Root, _ func(watch.Event)) error { return rescan(ctx, v, stream, r, opts) }
	}
	g.Go(func() error {
		for r := range rescans {
			queuedMu.Lock()
			delete(queued, r.Path)
			queuedMu.Unlock()
			if err := doRescan(gctx, r, opts.Event); err != nil {
				if gctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("rescan %s after an overflow: %w", r.Path, err)
			}
		}
		return nil
	})
	err := g.Wait()
	stopStream()
	if serr := <-streamDone; serr != nil && err == nil {
		err = serr
	}
	return err
}

// datasetOf is the dataset of the root holding path.
func datasetOf(roots []Root, root string) string {
	for _, r := range roots {
		if r.Path == root {
			return r.Dataset
		}
	}
	return ""
}

// Entry is e as a ledger entry. Ledger entries are JSON, which holds only
// UTF-8: a path that is not valid UTF-8 is written with its invalid bytes
// as \xNN escapes, and its exact bytes go in detail "path_b64" (and
// "old_path_b64"), so nothing is lost.
func Entry(e watch.Event, dataset string) ledger.Entry {
	// Most events have no detail: the map is made only when needed.
	var detail map[string]string
	set := func(k, v string) {
		if detail == nil {
			detail = make(map[string]string, len(e.Detail)+2)
		}
		detail[k] = v
	}
	for k, val := range e.Detail {
		set(k, textPath(val, k, set)) // "moved_to" is a path too
	}
	path := textPath(e.Path, "path", set)
	le := ledger.Entry{
		Time: e.Time, Kind: "file." + string(e.Kind), Dataset: dataset, Path: path, Outcome: "ok",
		Actor: ledger.Actor{UID: e.Principal.UID, User: e.Principal.User, PID: e.Principal.PID, Exe: textPath(e.Principal.Exe, "exe", set)},
	}
	if e.OldPath != "" {
		set("old_path", textPath(e.OldPath, "old_path", set))
	}
	if e.Count > 1 {
		set("count", strconv.Itoa(e.Count))
	}
	if e.Dir {
		set("dir", "1")
	}
	le.Detail = detail
	return le
}

// textPath is p for a JSON document: p itself when it is UTF-8, else p
// with each invalid byte as \xNN, its exact bytes going, base64, to
// set(field+"_b64", ...).
func textPath(p, field string, set func(k, v string)) string {
	if utf8.ValidString(p) {
		return p
	}
	set(field+"_b64", base64.StdEncoding.EncodeToString([]byte(p)))
	var b strings.Builder
	for i := 0; i < len(p); {
		r, n := utf8.DecodeRuneInString(p[i:])
		if r == utf8.RuneError && n == 1 {
			fmt.Fprintf(&b, "\\x%02x", p[i])
		} else {
			b.WriteString(p[i : i+n])
		}
		i += n
	}
	return b.String()
}

func record(ctx context.Context, s *audit.Stream, roots []Root, e watch.Event) error {
	return s.Add(ctx, Entry(e, datasetOf(roots, e.Root)))
}

// rescan snapshots r and records every difference from its last version.
func rescan(ctx context.Context, v *vault.Vault, s *audit.Stream, r Root, opts WatchOptions) error {
	taken, err := snapshot.Take(ctx, v, r.Dataset, "", "rescan after the watch lost events", r.Path, snapshot.ArchiveOptions{})
	if err != nil {
		return err
	}
	parent, id := taken.Parent, taken.Version.ID
	indexVersion(ctx, opts, taken.Version)
	if parent == nil {
		opts.Logger.Info("no earlier version to compare with: the rescan snapshot is the baseline", "root", r.Path, "version", id.Short())
		return nil
	}
	return recordChanges(ctx, v, s, r, parent, taken.Version, nil, opts.Event)
}

// recordChanges records each difference between versions parent and ver
// of r's dataset as a rescan event (without a principal: who made it is
// not known), with the details in extra, and hands each to event if set.
func recordChanges(ctx context.Context, v *vault.Vault, s *audit.Stream, r Root, parent, ver *vault.Version, extra map[string]string, event func(watch.Event)) error {
	d, err := snapshot.Diff(ctx, v, parent.Tree, ver.Tree)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	for _, cs := range [][]snapshot.Change{d.Removed, d.Added, d.Modified} {
		for _, c := range cs {
			detail := map[string]string{"change": c.Kind, "version": ver.ID.String(), "principal": "unknown"}
			maps.Copy(detail, extra)
			e := watch.Event{Time: now, Kind: watch.Rescan, Path: filepath.Join(r.Path, filepath.FromSlash(c.Path)), Root: r.Path, Detail: detail}
			if err := record(ctx, s, []Root{r}, e); err != nil {
				return err
			}
			if event != nil {
				event(e)
			}
		}
	}
	return nil
}

// VersionIndex is what rescans need from the catalog.
type VersionIndex interface {
	PutVersion(ctx context.Context, v catalog.Version) error
}

// indexVersion puts a version a rescan saved in opts.Index. The index is
// derived from the vault (`custody catalog sync` rebuilds it), so failing
// to update it is a warning, not a failed rescan.
func indexVersion(ctx context.Context, opts WatchOptions, ver *vault.Version) {
	if opts.Index == nil {
		return
	}
	if err := opts.Index.PutVersion(ctx, catalog.VersionOf(ver)); err != nil {
		opts.Logger.Warn("catalog index not updated; run `custody catalog sync`", "version", ver.ID.Short(), "err", err)
	}
}
