package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/custodyhq/custody/internal/audit"
	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/ledger"
	"github.com/custodyhq/custody/internal/vault"
)

func newGateCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "gate",
		Short: "The zero-trust gate: while closed, offsite pushes, forget and prune refuse; snapshots go on",
	}
	c.AddCommand(newGateStatusCmd(g), newGateCloseCmd(g), newGateOpenCmd(g))
	return c
}

func gateJSON(gt catalog.Gate) map[string]any {
	m := map[string]any{"id": gt.ID, "dataset": gt.Dataset, "reason": gt.Reason, "closed_by": gt.ClosedBy, "closed_at": gt.ClosedAt, "open": gt.Open()}
	if gt.Open() {
		m["opened_by"], m["opened_at"] = gt.OpenedBy, gt.OpenedAt
	}
	return m
}

func newGateStatusCmd(g *globals) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "List closed gates (--all: with those opened again); exit 0 either way",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			return g.withAudit(ctx, func(_ *vault.Vault, _ *audit.Recorder, db *catalog.DB) error {
				gs, err := db.Gates(ctx, all)
				if err != nil {
					return err
				}
				if g.json {
					rows := []map[string]any{}
					for _, gt := range gs {
						rows = append(rows, gateJSON(gt))
					}
					return printJSON(g.stdout, rows)
				}
				if len(gs) == 0 {
					fmt.Fprintln(g.stdout, "the gate is open: no incident holds back pushes or destructive steps")
					return nil
				}
				tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "GATE\tDATASET\tSTATE\tCLOSED\tBY\tREASON")
				for _, gt := range gs {
					ds, state := gt.Dataset, "closed"
					if ds == "" {
						ds = "(all)"
					}
					if gt.Open() {
						state = "opened " + gt.OpenedAt.Local().Format("2006-01-02 15:04") + " by " + gt.OpenedBy
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", gt.ID, ds, state, gt.ClosedAt.Local().Format("2006-01-02 15:04:05"), gt.ClosedBy, gt.Reason)
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "also list gates opened again")
	return cmd
}

func newGateCloseCmd(g *globals) *cobra.Command {
	var dataset, reason string
	cmd := &cobra.Command{
		Use:   "close --reason TEXT [--dataset D]",
		Short: "Close the gate for a dataset (or the whole vault) while an incident is investigated",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if reason == "" {
				return usagef("gate close: --reason is required (the incident, or why)")
			}
			ctx := cmd.Context()
			return g.withAudit(ctx, func(v *vault.Vault, _ *audit.Recorder, db *catalog.DB) (err error) {
				entry := ledger.Entry{Kind: "gate.close", Dataset: dataset, Detail: map[string]string{"reason": reason}}
				defer func() { err = g.audited(ctx, v, &entry, err) }()
				gt, err := db.CloseGate(ctx, dataset, reason, actorName(), time.Now())
				if err != nil {
					return err
				}
				entry.Detail["gate"] = gt.ID
				if g.json {
					return printJSON(g.stdout, gateJSON(gt))
				}
				fmt.Fprintf(g.stdout, "gate %s closed: offsite pushes, forget and prune refuse until `custody gate open %s`\n", gt.ID, gt.ID)
				return nil
			})
		},
	}
	cmd.Flags().StringVarP(&dataset, "dataset", "d", "", "the dataset (default: the whole vault)")
	cmd.Flags().StringVar(&reason, "reason", "", "why: the incident it belongs to")
	return cmd
}

func newGateOpenCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "open GATE",
		Short: "Open a gate again once its incident is resolved",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			return g.withAudit(ctx, func(v *vault.Vault, _ *audit.Recorder, db *catalog.DB) (err error) {
				entry := ledger.Entry{Kind: "gate.open", Detail: map[string]string{"gate": args[0]}}
				defer func() { err = g.audited(ctx, v, &entry, err) }()
				gt, err := db.OpenGate(ctx, args[0], actorName(), time.Now())
				if err != nil {
					return err
				}
				entry.Dataset = gt.Dataset
				if g.json {
					return printJSON(g.stdout, gateJSON(gt))
				}
				fmt.Fprintf(g.stdout, "gate %s opened\n", gt.ID)
				return nil
			})
		},
	}
}

// actorName names this process's user for the catalog: the login name, or
// the uid when there is none.
func actorName() string {
	a := audit.Self()
	if a.User != "" {
		return a.User
	}
	return fmt.Sprintf("uid %d", *a.UID)
}
