package cli

import (
	"context"
	"errors"
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
				principalLabel(in.UID, in.User), strings.Join(in.Datasets, ","), len(in.Signals)+in.SignalsDropped)
		}
		return tw.Flush()
	})
}

func principalLabel(uid *uint32, name string) string {
	switch {
	case name != "" && uid != nil:
		return fmt.Sprintf("%s (uid %d)", name, *uid)
	case uid != nil:
		return fmt.Sprintf("uid %d", *uid)
	}
	return "unknown"
}

func (g *globals) showIncident(ctx context.Context, arg string) error {
	id, err := parseIncidentID(arg)
	if err != nil {
		return err
	}
	return g.withAudit(ctx, func(_ *vault.Vault, _ *audit.Recorder, db *catalog.DB) error {
		in, err := db.Incident(ctx, id)
		if err != nil {
			return incidentErr(id, err)
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
		fmt.Fprintf(w, "principal:   %s %s\n", principalLabel(in.UID, in.User), in.Exe)
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

func incidentErr(id int64, err error) error {
	if errors.Is(err, catalog.ErrNoIncident) {
		return fmt.Errorf("no incident %d (see 'custody incidents list')", id)
	}
	return err
}

// transition moves an incident to state and records it.
func (g *globals) transition(ctx context.Context, v *vault.Vault, db *catalog.DB, id int64, state string, detail map[string]string, apply func(*catalog.Incident) error) (catalog.Incident, error) {
	who := audit.Self()
	in, err := db.UpdateIncident(ctx, id, func(c *catalog.Incident) error {
		if apply != nil {
			if err := apply(c); err != nil {
				return err
			}
		}
		c.State = state
		c.Actions = append(c.Actions, catalog.IncidentAction{Time: time.Now().UTC(), Action: "state " + state, Outcome: "ok", By: who.User})
		return nil
	})
	if detail == nil {
		detail = map[string]string{}
	}
	detail["incident"] = strconv.FormatInt(id, 10)
	kind := map[string]string{catalog.IncidentContained: "contain", catalog.IncidentRecovered: "recover", catalog.IncidentFalsePositive: "false-positive"}[state]
	e := ledger.Entry{Kind: "incident." + kind, Detail: detail}
	if aerr := g.audited(ctx, v, &e, err); aerr != nil {
		return in, incidentErr(id, aerr)
	}
	return in, nil
}

func (g *globals) containIncident(ctx context.Context, arg string) error {
	id, err := parseIncidentID(arg)
	if err != nil {
		return err
	}
	return g.withAudit(ctx, func(v *vault.Vault, _ *audit.Recorder, db *catalog.DB) error {
		in, err := db.Incident(ctx, id)
		if err != nil {
			return incidentErr(id, err)
		}
		if in.UID == nil || *in.UID == 0 {
			return fmt.Errorf("incident %d: its principal is %s, which cannot be locked out; stop its processes by hand", id, principalLabel(in.UID, in.User))
		}
		who := audit.Self().User
		if err := db.AddLockout(ctx, catalog.Lockout{UID: *in.UID, User: in.User, Incident: id, Since: time.Now().UTC(), By: who}); err != nil {
			return err
		}
		le := ledger.Entry{Kind: "lockout", Detail: map[string]string{"incident": strconv.FormatInt(id, 10), "uid": strconv.FormatUint(uint64(*in.UID), 10)}}
		if err := g.audited(ctx, v, &le, nil); err != nil {
			return err
		}
		gate, err := db.CloseGate(ctx, "", fmt.Sprintf("incident %d contained by %s", id, who), who, time.Now().UTC())
		ge := ledger.Entry{Kind: "gate.close", Detail: map[string]string{"incident": strconv.FormatInt(id, 10), "gate": gate.ID}}
		if err := g.audited(ctx, v, &ge, err); err != nil {
			return err
		}
		if _, err := g.transition(ctx, v, db, id, catalog.IncidentContained, nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(g.stdout, "incident %d contained: %s locked out (a running guard enforces it), gate %s closed\n", id, principalLabel(in.UID, in.User), gate.ID)
		return nil
	})
}

func (g *globals) recoverIncident(ctx context.Context, arg string, restore bool) error {
	id, err := parseIncidentID(arg)
	if err != nil {
		return err
	}
	return g.withAudit(ctx, func(v *vault.Vault, _ *audit.Recorder, db *catalog.DB) error {
		in, err := db.Incident(ctx, id)
		if err != nil {
			return incidentErr(id, err)
		}
		detail := map[string]string{}
		if restore {
			files, err := db.IncidentFiles(ctx, id)
			if err != nil {
				return err
			}
			res, rerr := guard.Restore(ctx, v, in, files)
			if res != nil {
				detail["restored"] = strconv.Itoa(len(res.Restored))
				detail["quarantined"] = strconv.Itoa(len(res.Quarantined))
				detail["quarantine"] = res.Quarantine
			}
			if rerr != nil {
				e := ledger.Entry{Kind: "incident.restore", Detail: detail}
				return g.audited(ctx, v, &e, rerr)
			}
			if g.json {
				defer printJSON(g.stdout, res)
			} else {
				defer fmt.Fprintf(g.stdout, "incident %d: %d files restored from the recovery point, %d damaged or planted files moved to %s\n",
					id, len(res.Restored), len(res.Quarantined), res.Quarantine)
			}
		}
		if _, err := g.transition(ctx, v, db, id, catalog.IncidentRecovered, detail, nil); err != nil {
			return err
		}
		fmt.Fprintf(g.stderr, "incident %d recovered; lockouts and the gate stay until released: 'custody lockouts release', 'custody gate open'\n", id)
		return nil
	})
}

func (g *globals) falsePositive(ctx context.Context, arg string) error {
	id, err := parseIncidentID(arg)
	if err != nil {
		return err
	}
	return g.withAudit(ctx, func(v *vault.Vault, _ *audit.Recorder, db *catalog.DB) error {
		in, err := db.Incident(ctx, id)
		if err != nil {
			return incidentErr(id, err)
		}
		// What fired counts as normal for this principal from now on:
		// twice as much of it before it scores.
		per := map[string]int{}
		for _, s := range in.Signals {
			per[s.Detector]++
		}
		for d, n := range per {
			if err := db.RaiseAllowance(ctx, in.UID, d, 2*n); err != nil {
				return err
			}
		}
		if _, err := g.transition(ctx, v, db, id, catalog.IncidentFalsePositive, nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(g.stdout, "incident %d marked a false positive; the guard allows %s that much more of the same\n", id, principalLabel(in.UID, in.User))
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

func (g *globals) releaseLockout(ctx context.Context, who string) error {
	uid, err := strconv.ParseUint(who, 10, 32)
	if err != nil {
		u, lerr := user.Lookup(who)
		if lerr != nil {
			return usagef("lockouts release: %q is neither a uid nor a known user", who)
		}
		uid, _ = strconv.ParseUint(u.Uid, 10, 32)
	}
	return g.withAudit(ctx, func(v *vault.Vault, _ *audit.Recorder, db *catalog.DB) error {
		l, err := db.ReleaseLockout(ctx, uint32(uid), audit.Self().User, time.Now().UTC())
		if errors.Is(err, catalog.ErrNoLockout) {
			return fmt.Errorf("uid %d is not locked out (see 'custody lockouts list')", uid)
		}
		e := ledger.Entry{Kind: "lockout.release", Detail: map[string]string{"uid": strconv.FormatUint(uid, 10)}}
		if err == nil {
			e.Detail["incident"] = strconv.FormatInt(l.Incident, 10)
		}
		if err := g.audited(ctx, v, &e, err); err != nil {
			return err
		}
		fmt.Fprintf(g.stdout, "uid %d released; the gate stays closed until 'custody gate open'\n", uid)
		return nil
	})
}
