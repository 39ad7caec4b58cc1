package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/custodyhq/custody/internal/audit"
	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/daemon"
	"github.com/custodyhq/custody/internal/vault"
	"github.com/custodyhq/custody/internal/watch"
)

func newWatchCmd(g *globals) *cobra.Command {
	var backendName string
	var datasets []string
	cmd := &cobra.Command{
		Use:   "watch PATH... [--backend auto|fanotify|inotify] [--json]",
		Short: "Record who changes which file under PATH, in real time, into the audit ledger (foreground; events stream out)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			roots, err := watchRoots("watch", args, datasets)
			if err != nil {
				return err
			}
			paths := make([]string, len(roots))
			for i, r := range roots {
				paths[i] = r.Path
			}
			watcherGC()
			src, err := g.watchSource(backendName, paths)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			return g.withAudit(ctx, func(v *vault.Vault, rec *audit.Recorder, db *catalog.DB) error {
				fmt.Fprintf(g.stderr, "watching %d trees with %s; Ctrl-C stops\n", len(roots), src.Name())
				if !src.Attributes() {
					fmt.Fprintln(g.stderr, "note: inotify cannot tell who made a change: events carry no user or process (run as root for fanotify)")
				}
				out := newDelayedWriter(g.stdout, 50*time.Millisecond)
				enc := json.NewEncoder(out)
				enc.SetEscapeHTML(false)
				err := daemon.Watch(ctx, v, rec, daemon.WatchOptions{Roots: roots, Source: src, Logger: g.log, Index: db, Event: func(e watch.Event) {
					if g.json {
						enc.Encode(e)
						return
					}
					io.WriteString(out, eventLine(e)+"\n")
				}})
				cerr := out.Close()
				if errors.Is(err, ctx.Err()) {
					err = nil
				}
				if err == nil && cerr != nil {
					err = fmt.Errorf("watch: writing events: %w", cerr)
				}
				return err
			})
		},
	}
	cmd.Flags().StringVar(&backendName, "backend", "auto", "auto (fanotify as root, else inotify), fanotify or inotify")
	cmd.Flags().StringArrayVarP(&datasets, "dataset", "d", nil, "dataset name of each PATH, in order (default: its base name)")
	return cmd
}

// watchRoots turns a watching command's PATHs (and its --dataset names,
// one per PATH or none) into roots.
func watchRoots(cmd string, args, datasets []string) ([]daemon.Root, error) {
	if len(datasets) > 0 && len(datasets) != len(args) {
		return nil, usagef("%s: give one --dataset per PATH, or none (each PATH's base name)", cmd)
	}
	var roots []daemon.Root
	for i, a := range args {
		abs, err := filepath.Abs(a)
		if err != nil {
			return nil, usagef("%s: %v", cmd, err)
		}
		if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
			return nil, usagef("%s: %s is not a directory", cmd, a)
		}
		r := daemon.Root{Path: abs, Dataset: filepath.Base(abs)}
		if len(datasets) > 0 {
			r.Dataset = datasets[i]
		}
		if err := checkDataset(r.Dataset); err != nil {
			return nil, err
		}
		roots = append(roots, r)
	}
	return roots, nil
}

// watcherGC sets the collector for a long-running watcher: main's setting
// suits snapshots' big short-lived buffers, but a watcher's heap is small
// and its garbage steady, and every collection is CPU taken from the
// writers it watches. GOGC, when set, wins.
func watcherGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
}

// watchSource picks the event source.
func (g *globals) watchSource(name string, paths []string) (watch.Source, error) {
	switch name {
	case "fanotify":
		return watch.NewFanotify(paths, watch.FanotifyOptions{Logger: g.log})
	case "inotify":
		return watch.NewInotify(paths, watch.InotifyOptions{Logger: g.log})
	case "auto", "":
		src, err := watch.NewFanotify(paths, watch.FanotifyOptions{Logger: g.log})
		if err == nil {
			return src, nil
		}
		if !errors.Is(err, watch.ErrFanotifyUnavailable) {
			return nil, err
		}
		g.log.Info("fanotify unavailable, using inotify", "err", err)
		return watch.NewInotify(paths, watch.InotifyOptions{Logger: g.log})
	}
	return nil, usagef("watch: --backend %q: use auto, fanotify or inotify", name)
}

// eventLine is an event for people: time, kind, who, path. It is built by
// appending, not fmt: a watcher prints tens of thousands a second.
func eventLine(e watch.Event) string {
	who := "unknown"
	if p := e.Principal; p.Known() {
		who = p.User
		if who == "" {
			who = "uid " + strconv.FormatUint(uint64(*p.UID), 10)
		}
		if p.Exe != "" {
			who += " (" + filepath.Base(p.Exe) + " " + strconv.Itoa(p.PID) + ")"
		}
	}
	b := make([]byte, 0, 128)
	b = e.Time.Local().AppendFormat(b, "15:04:05.000")
	b = append(b, ' ')
	b = appendPadded(b, string(e.Kind), 11)
	b = append(b, ' ')
	b = appendPadded(b, who, 28)
	b = append(b, ' ')
	b = append(b, displayPath(e.Path)...)
	if e.OldPath != "" {
		b = append(b, " (from "...)
		b = append(b, displayPath(e.OldPath)...)
		b = append(b, ')')
	}
	if e.Count > 1 {
		b = append(b, " ×"...)
		b = strconv.AppendInt(b, int64(e.Count), 10)
	}
	return string(b)
}

// appendPadded appends s left-aligned in width runes, as %-*s does.
func appendPadded(b []byte, s string, width int) []byte {
	b = append(b, s...)
	for n := utf8.RuneCountInString(s); n < width; n++ {
		b = append(b, ' ')
	}
	return b
}
