package cli

import (
	"context"
	"fmt"
	"os/user"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/custodyhq/custody/internal/audit"
	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/guard"
	"github.com/custodyhq/custody/internal/ledger"
	"github.com/custodyhq/custody/internal/vault"
)

func newIncidentsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "incidents [list | show ID | contain ID | recover ID [--restore] | false-positive ID]",
		Short: "The guard's incidents: list, inspect, contain, recover, or mark as false positives",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return g.listIncidents(cmd.Context()) },
	}
	list := &cobra.Command{Use: "list", Short: "List incidents, newest first", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return g.listIncidents(cmd.Context()) }}
	show := &cobra.Command{Use: "show ID", Short: "An incident's signals, actions, files and recovery points", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return g.showIncident(cmd.Context(), args[0]) }}
	contain := &cobra.Command{Use: "contain ID", Short: "Lock the incident's principal out and close the gate (a running guard enforces the lockout)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return g.containIncident(cmd.Context(), args[0]) }}
	var restore bool
	recover := &cobra.Command{Use: "recover ID [--restore]", Short: "Mark the incident recovered; --restore first puts back the files it touched from the recovery point", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.recoverIncident(cmd.Context(), args[0], restore)
		}}
	recover.Flags().BoolVar(&restore, "restore", false, "restore exactly the files the incident touched from the recovery point, moving the damaged copies to a quarantine folder")
	fp := &cobra.Command{Use: "false-positive ID", Short: "Mark the incident a false positive; the guard learns to allow that much of the same activity by the same principal", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return g.falsePositive(cmd.Context(), args[0]) }}
	cmd.AddCommand(list, show, contain, recover, fp)
	return cmd
}

func parseIncidentID(s string) (int64, error) {
	id, err := strconv.ParseInt(strings.TrimPrefix(s, "#"), 10, 64)
	if err != nil || id <= 0 {
		return 0, usagef("incidents: %q is not an incident id (see 'custody incidents list')", s)
	}
	return id, nil
}

func (g *globals) listIncidents(ctx context.Context) error {
	if c, err := g.remote(); c != nil || err != nil {
		if err != nil {
			return err
		}
		return g.remoteIncidents(ctx, c)
	}
	return g.withAudit(ctx, func(_ *vault.Vault, _ *audit.Recorder, db *catalog.DB) error {
		incs, err := db.Incidents(ctx)
		if err != nil {
			return err
		}
		if g.json {
			return printJSON(g.stdout, incs)
		}
		if len(incs) == 0 {
			fmt.Fprintln(g.stdout, "no incidents")
			return nil
		}
		tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tOPENED\tSTATE\tSEVERITY\tPRINCIPAL\tDATASETS\tSIGNALS")
		for _, in := range incs {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\n", in.ID, in.Opened.Local().Format(time.DateTime), in.State, in.Severity,
				guard.PrincipalLabel(in.UID, in.User), strings.Join(in.Datasets, ","), len(in.Signals)+in.SignalsDropped)
		}
		return tw.Flush()
	})
}

func (g *globals) showIncident(ctx context.Context, arg string) error {
	if c, err := g.remote(); c != nil || err != nil {
		if err != nil {
			return err
		}
		return g.remoteIncidentStep(ctx, c, arg, "", nil)
	}
	id, err := parseIncidentID(arg)
	if err != nil {
		return err
	}
	return g.withAudit(ctx, func(v *vault.Vault, _ *audit.Recorder, db *catalog.DB) error {
		in, err := g.manager(v, db).Incident(ctx, id)
		if err != nil {
			return err
		}
		files, err := db.IncidentFiles(ctx, id)
		if err != nil {
			return err
		}
		if g.json {
			return printJSON(g.stdout, struct {
				catalog.Incident
				Files []catalog.IncidentFile
			}{in, files})
		}
		w := g.stdout
		fmt.Fprintf(w, "incident %d: %s, %s\n", in.ID, in.State, in.Severity)
		fmt.Fprintf(w, "principal:   %s %s\n", guard.PrincipalLabel(in.UID, in.User), in.Exe)
		fmt.Fprintf(w, "opened:      %s (first malicious event %s)\n", in.Opened.Local().Format(time.RFC3339), in.FirstEvent.Local().Format(time.RFC3339Nano))
		fmt.Fprintf(w, "datasets:    %s\n", strings.Join(in.Datasets, ", "))
		for ds, v := range in.Recovery {
			fmt.Fprintf(w, "recovery point of %s: %s\n", ds, v)
		}
		fmt.Fprintf(w, "signals (%d):\n", len(in.Signals)+in.SignalsDropped)
		for i, s := range in.Signals {
			if i == 20 {
				fmt.Fprintf(w, "  … %d more\n", len(in.Signals)-20+in.SignalsDropped)
				break
			}
			fmt.Fprintf(w, "  %s %-12s %s: %s\n", s.Time.Local().Format("15:04:05.000"), s.Detector, displayPath(s.Path), s.Reason)
		}
		fmt.Fprintf(w, "actions:\n")
		for _, a := range in.Actions {
			fmt.Fprintf(w, "  %s %s: %s (%s)\n", a.Time.Local().Format("15:04:05.000"), a.Action, a.Outcome, a.By)
		}
		fmt.Fprintf(w, "files touched (%d):\n", len(files))
		for i, f := range files {
			if i == 50 {
				fmt.Fprintf(w, "  … %d more (--json lists all)\n", len(files)-50)
				break
			}
			fmt.Fprintf(w, "  %-22s %s\n", f.Kinds, displayPath(f.Path))
		}
		return nil
	})
}

// manager is the guard's Manager acting as this process's user, recording
// through the command's audit trail.
func (g *globals) manager(v *vault.Vault, db *catalog.DB) *guard.Manager {
	return &guard.Manager{Vault: v, DB: db, By: audit.Self().User,
		Record: func(ctx context.Context, e ledger.Entry, err error) error { return g.audited(ctx, v, &e, err) }}
}

func (g *globals) containIncident(ctx context.Context, arg string) error {
	if c, err := g.remote(); c != nil || err != nil {
		if err != nil {
			return err
		}
		return g.remoteIncidentStep(ctx, c, arg, "contain", nil)
	}
	id, err := parseIncidentID(arg)
	if err != nil {
		return err
	}
	return g.withAudit(ctx, func(v *vault.Vault, _ *audit.Recorder, db *catalog.DB) error {
		res, err := g.manager(v, db).Contain(ctx, id)
		if err != nil {
			return err
		}
		in := res.Incident
		fmt.Fprintf(g.stdout, "incident %d contained: %s locked out (a running guard enforces it), gate %s closed\n", id, guard.PrincipalLabel(in.UID, in.User), res.Gate.ID)
		if n := len(res.Suspended); n > 0 {
			fmt.Fprintf(g.stderr, "%d API token(s) of %s suspended until 'custody lockouts release'\n", n, guard.PrincipalLabel(in.UID, in.User))
		}
		return nil
	})
}

func (g *globals) recoverIncident(ctx context.Context, arg string, restore bool) error {
	if c, err := g.remote(); c != nil || err != nil {
		if err != nil {
			return err
		}
		return g.remoteIncidentStep(ctx, c, arg, "recover", map[string]bool{"restore": restore})
	}
	id, err := parseIncidentID(arg)
	if err != nil {
		return err
	}
	return g.withAudit(ctx, func(v *vault.Vault, _ *audit.Recorder, db *catalog.DB) error {
		res, err := g.manager(v, db).Recover(ctx, id, restore)
		if err == nil {
			fmt.Fprintf(g.stderr, "incident %d recovered; lockouts and the gate stay until released: 'custody lockouts release', 'custody gate open'\n", id)
		}
		// What a restore did is worth saying even when marking the
		// incident recovered failed after it.
		if r := res.Restore; r != nil {
			if g.json {
				printJSON(g.stdout, r)
			} else {
				fmt.Fprintf(g.stdout, "incident %d: %d files restored from the recovery point, %d damaged or planted files moved to %s\n",
					id, len(r.Restored), len(r.Quarantined), r.Quarantine)
			}
		}
		return err
	})
}

func (g *globals) falsePositive(ctx context.Context, arg string) error {
	if c, err := g.remote(); c != nil || err != nil {
		if err != nil {
			return err
		}
		return g.remoteIncidentStep(ctx, c, arg, "false-positive", nil)
	}
	id, err := parseIncidentID(arg)
	if err != nil {
		return err
	}
	return g.withAudit(ctx, func(v *vault.Vault, _ *audit.Recorder, db *catalog.DB) error {
		in, err := g.manager(v, db).FalsePositive(ctx, id)
		if err != nil {
			return err
		}
		fmt.Fprintf(g.stdout, "incident %d marked a false positive; the guard allows %s that much more of the same\n", id, guard.PrincipalLabel(in.UID, in.User))
		return nil
	})
}

func newLockoutsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lockouts [list | release PRINCIPAL]",
		Short: "Principals the guard locked out; release one (an audited step)",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return g.listLockouts(cmd.Context()) },
	}
	list := &cobra.Command{Use: "list", Short: "List active lockouts", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return g.listLockouts(cmd.Context()) }}
	release := &cobra.Command{Use: "release PRINCIPAL", Short: "Release a lockout (PRINCIPAL: a user name or uid); a running guard applies it within a second", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return g.releaseLockout(cmd.Context(), args[0]) }}
	cmd.AddCommand(list, release)
	return cmd
}

func (g *globals) listLockouts(ctx context.Context) error {
	if c, err := g.remote(); c != nil || err != nil {
		if err != nil {
			return err
		}
		return g.remoteLockouts(ctx, c, "")
	}
	return g.withAudit(ctx, func(_ *vault.Vault, _ *audit.Recorder, db *catalog.DB) error {
		ls, err := db.Lockouts(ctx)
		if err != nil {
			return err
		}
		if g.json {
			return printJSON(g.stdout, ls)
		}
		if len(ls) == 0 {
			fmt.Fprintln(g.stdout, "no lockouts")
			return nil
		}
		tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "UID\tUSER\tINCIDENT\tSINCE\tBY")
		for _, l := range ls {
			fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\n", l.UID, l.User, l.Incident, l.Since.Local().Format(time.DateTime), l.By)
		}
		return tw.Flush()
	})
}

// lookUpUID is the uid who names: a number, or a user name known here.
func lookUpUID(who string) (uint32, bool) {
	uid, err := strconv.ParseUint(who, 10, 32)
	if err != nil {
		u, lerr := user.Lookup(who)
		if lerr != nil {
			return 0, false
		}
		if uid, err = strconv.ParseUint(u.Uid, 10, 32); err != nil {
			return 0, false
		}
	}
	return uint32(uid), true
}

func (g *globals) releaseLockout(ctx context.Context, who string) error {
	if c, err := g.remote(); c != nil || err != nil {
		if err != nil {
			return err
		}
		return g.remoteLockouts(ctx, c, who)
	}
	uid, ok := lookUpUID(who)
	if !ok {
		return usagef("lockouts release: %q is neither a uid nor a known user", who)
	}
	return g.withAudit(ctx, func(v *vault.Vault, _ *audit.Recorder, db *catalog.DB) error {
		if _, err := g.manager(v, db).ReleaseLockout(ctx, uid); err != nil {
			return err
		}
		fmt.Fprintf(g.stdout, "uid %d released; the gate stays closed until 'custody gate open'\n", uid)
		return nil
	})
}
