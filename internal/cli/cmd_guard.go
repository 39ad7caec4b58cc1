package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/custodyhq/custody/internal/audit"
	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/config"
	"github.com/custodyhq/custody/internal/daemon"
	"github.com/custodyhq/custody/internal/guard"
	"github.com/custodyhq/custody/internal/guard/detect"
	"github.com/custodyhq/custody/internal/guard/drill"
	"github.com/custodyhq/custody/internal/ledger"
	"github.com/custodyhq/custody/internal/snapshot"
	"github.com/custodyhq/custody/internal/vault"
)

type guardFlags struct {
	config   string
	backend  string
	datasets []string
	frozen   []string
	allow    []string
	canaries bool
	process  string
	webhooks []string
	syslog   bool
}

func newGuardCmd(g *globals) *cobra.Command {
	var f guardFlags
	cmd := &cobra.Command{
		Use:   "guard PATH... [--config custody.yaml] [--frozen DATASET] [--allow DATASET=UID,...] [--canaries] [--webhook URL] [--syslog]",
		Short: "Watch PATH, detect ransomware and malicious manipulation, and respond: snapshot, lock out, close the gate, alert (foreground)",
		Long: `guard watches each PATH like 'custody watch' and runs the detectors on every
event. An incident opens when a principal's signals add up; by severity the
guard then snapshots the affected datasets (the version before the first
malicious event is the recovery point), closes the zero-trust gate (offsite
pushes and destructive steps refuse), locks the principal out of the
protected trees (its opens are denied) and freezes its processes, and alerts.
Every action is in the audit ledger. Handle incidents with 'custody incidents'.

With --config (or CUSTODY_CONFIG), the datasets, their policies (frozen,
writers), the guard's settings and the alerts come from custody.yaml, and
PATH, if given, picks which of its datasets to guard; the other flags are
then refused.

Lockouts are enforced while a guard runs (they need root and fanotify); they
are kept in the catalog and applied again when a guard starts.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.config == "" {
				f.config = g.getenv("CUSTODY_CONFIG")
			}
			if f.config != "" {
				for _, name := range []string{"dataset", "frozen", "allow", "canaries", "process", "webhook", "syslog"} {
					if cmd.Flags().Changed(name) {
						return usagef("guard: --%s and --config: set it in the config file", name)
					}
				}
				return g.runGuardConfig(cmd.Context(), args, f)
			}
			if len(args) == 0 {
				return usagef("guard: give the PATHs to guard, or --config custody.yaml")
			}
			return g.runGuard(cmd.Context(), args, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "read datasets, policies, guard settings and alerts from this custody.yaml; env CUSTODY_CONFIG")
	fl.StringVar(&f.backend, "backend", "auto", "auto (fanotify as root, else inotify), fanotify or inotify")
	fl.StringArrayVarP(&f.datasets, "dataset", "d", nil, "dataset name of each PATH, in order (default: its base name)")
	fl.StringArrayVar(&f.frozen, "frozen", nil, "a dataset no one may write to (repeatable)")
	fl.StringArrayVar(&f.allow, "allow", nil, "DATASET=UID[,UID...]: only these users may write to the dataset (repeatable)")
	fl.BoolVar(&f.canaries, "canaries", false, "place canary files in each PATH; touching one is a critical incident")
	fl.StringVar(&f.process, "process", "freeze", "what happens to a locked-out principal's processes: freeze, kill or none")
	fl.StringArrayVar(&f.webhooks, "webhook", nil, "POST each incident as JSON to this URL (repeatable)")
	fl.BoolVar(&f.syslog, "syslog", false, "also send each incident to the local syslog")
	return cmd
}

// guardRoots turns the guard's paths and flags into roots and datasets.
func guardRoots(args []string, f guardFlags) ([]daemon.Root, []guard.Dataset, error) {
	switch f.process {
	case "freeze", "kill", "none":
	default:
		return nil, nil, usagef("guard: --process %q: use freeze, kill or none", f.process)
	}
	allow := map[string][]uint32{}
	for _, a := range f.allow {
		name, uids, ok := strings.Cut(a, "=")
		if !ok || name == "" {
			return nil, nil, usagef("guard: --allow %q: use DATASET=UID[,UID...]", a)
		}
		for _, u := range strings.Split(uids, ",") {
			n, err := strconv.ParseUint(strings.TrimSpace(u), 10, 32)
			if err != nil {
				return nil, nil, usagef("guard: --allow %q: %q is not a uid", a, u)
			}
			allow[name] = append(allow[name], uint32(n))
		}
	}
	roots, err := watchRoots("guard", args, f.datasets)
	if err != nil {
		return nil, nil, err
	}
	var sets []guard.Dataset
	for _, r := range roots {
		sets = append(sets, guard.Dataset{Name: r.Dataset, Path: r.Path, Writers: allow[r.Dataset]})
	}
	for _, fz := range f.frozen {
		found := false
		for i := range sets {
			if sets[i].Name == fz {
				sets[i].Frozen, found = true, true
			}
		}
		if !found {
			return nil, nil, usagef("guard: --frozen %s: no PATH is that dataset", fz)
		}
	}
	for name := range allow {
		found := false
		for _, s := range sets {
			found = found || s.Name == name
		}
		if !found {
			return nil, nil, usagef("guard: --allow %s: no PATH is that dataset", name)
		}
	}
	return roots, sets, nil
}

func (g *globals) runGuard(ctx context.Context, args []string, f guardFlags) error {
	roots, sets, err := guardRoots(args, f)
	if err != nil {
		return err
	}
	var alerts guard.Alerters
	for _, u := range f.webhooks {
		alerts = append(alerts, guard.Webhook{URL: u})
	}
	if f.syslog {
		alerts = append(alerts, guard.Syslog{})
	}
	opts := guard.Options{Datasets: sets, Policy: guard.Policy{Process: f.process}}
	if len(alerts) > 0 {
		opts.Alert = alerts
	}
	return g.guardWith(ctx, roots, f.backend, f.canaries, opts)
}

// runGuardConfig guards the datasets of a custody.yaml.
func (g *globals) runGuardConfig(ctx context.Context, args []string, f guardFlags) error {
	cfg, err := config.Load(f.config)
	if err != nil {
		return err
	}
	// Flags win over the environment, the environment over the file.
	if g.vault == "" {
		g.vault = cfg.Vault
	}
	if g.catalog == "" && g.getenv("CUSTODY_CATALOG") == "" {
		g.catalog = cfg.Catalog
	}
	pick := map[string]bool{}
	for _, a := range args {
		abs, err := filepath.Abs(a)
		if err != nil {
			return usagef("guard: %v", err)
		}
		pick[filepath.Clean(abs)] = true
	}
	var roots []daemon.Root
	var picked []config.Dataset
	for i := range cfg.Datasets {
		d := &cfg.Datasets[i]
		if len(pick) > 0 && !pick[filepath.Clean(d.Path)] {
			continue
		}
		delete(pick, filepath.Clean(d.Path))
		if fi, err := os.Stat(d.Path); err != nil || !fi.IsDir() {
			return fmt.Errorf("guard: dataset %s: %s is not a directory (%s)", d.Name, d.Path, f.config)
		}
		roots = append(roots, daemon.Root{Path: d.Path, Dataset: d.Name})
		picked = append(picked, *d)
	}
	for p := range pick {
		return usagef("guard: %s is not a dataset in %s", p, f.config)
	}
	if len(roots) == 0 {
		return usagef("guard: %s has no datasets to guard", f.config)
	}
	gc := cfg.Guard
	if !gc.Enabled {
		return fmt.Errorf("guard: the guard is disabled in %s (guard.enabled: false)", f.config)
	}
	opts := daemon.GuardConfig(cfg, picked)
	return g.guardWith(ctx, roots, f.backend, gc.Canaries, opts)
}

// guardWith guards roots with opts.
func (g *globals) guardWith(ctx context.Context, roots []daemon.Root, backend string, placeCanaries bool, opts guard.Options) error {
	sets := opts.Datasets
	var canaries []string
	if placeCanaries {
		for _, s := range sets {
			c, err := detect.PlaceCanaries(s.Path, 3)
			if err != nil {
				return fmt.Errorf("guard: placing canaries in %s: %w", s.Path, err)
			}
			canaries = append(canaries, c...)
		}
	}
	paths := make([]string, len(roots))
	for i, r := range roots {
		paths[i] = r.Path
	}
	watcherGC()
	src, err := g.watchSource(backend, paths)
	if err != nil {
		return err
	}
	return g.withAudit(ctx, func(v *vault.Vault, rec *audit.Recorder, db *catalog.DB) error {
		if err := g.guardBaselines(ctx, v, db, sets); err != nil {
			return err
		}
		if !src.Attributes() {
			fmt.Fprintln(g.stderr, "note: inotify cannot tell who made a change: incidents will have no principal and lock no one out (run as root for fanotify)")
		}
		opts.Canaries = canaries
		return daemon.Guard(ctx, v, rec, db, daemon.GuardOptions{Roots: roots, Source: src, Guard: opts, Logger: g.log,
			Ready: func() { fmt.Fprintf(g.stderr, "guarding %d trees with %s; Ctrl-C stops\n", len(roots), src.Name()) }})
	})
}

// guardBaselines takes a first version of every dataset that has none,
// so that an incident always has a recovery point.
func (g *globals) guardBaselines(ctx context.Context, v *vault.Vault, db *catalog.DB, sets []guard.Dataset) error {
	for _, s := range sets {
		vs, err := db.Versions(ctx, s.Name)
		if err != nil {
			return err
		}
		if len(vs) > 0 {
			continue
		}
		taken, err := snapshot.Take(ctx, v, s.Name, "", "guard baseline: the recovery point until the next version", s.Path, snapshot.ArchiveOptions{})
		if err != nil {
			return fmt.Errorf("guard: baseline version of %s: %w", s.Name, err)
		}
		g.indexVersion(taken.Version)
		e := ledger.Entry{Kind: "snapshot", Dataset: s.Name, Version: taken.Version.ID.String(), Path: s.Path,
			Detail: map[string]string{"reason": "guard baseline"}}
		if err := g.audited(ctx, v, &e, nil); err != nil {
			return err
		}
		fmt.Fprintf(g.stderr, "baseline version %s of %s\n", taken.Version.ID.Short(), s.Name)
	}
	return nil
}

// newDrillWorkerCmd is the hidden entry point the drill and the tests run
// as an unprivileged user: the attacks and benign workloads of package
// drill.
func newDrillWorkerCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:                "drill-worker",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if code := drill.Main(args, g.stdout, g.stderr); code != 0 {
				return exitCode(code)
			}
			return nil
		},
	}
}
