package cli

import (
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/custodyhq/custody/internal/audit"
	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/ledger"
	"github.com/custodyhq/custody/internal/vault"
)

func newCatalogCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "catalog", Short: "The metadata database: datasets, versions, principals"}
	c.AddCommand(newCatalogSyncCmd(g), newCatalogDatasetsCmd(g), newCatalogPrincipalsCmd(g))
	return c
}

func newCatalogSyncCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "sync",
		Short: "Rebuild the catalog's index of versions from the vault (after restoring or moving the catalog)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			ctx := cmd.Context()
			return g.withAudit(ctx, func(v *vault.Vault, _ *audit.Recorder, db *catalog.DB) (err error) {
				entry := ledger.Entry{Kind: "catalog.sync"}
				defer func() { err = g.audited(ctx, v, &entry, err) }()
				vers, damaged, err := v.ReadableVersions(ctx)
				if err != nil {
					return err
				}
				all := make([]catalog.Version, len(vers))
				for i, ver := range vers {
					all[i] = catalog.VersionOf(ver)
				}
				added, removed, err := db.SyncVersions(ctx, all)
				if err != nil {
					return err
				}
				entry.Detail = map[string]string{"added": strconv.Itoa(added), "removed": strconv.Itoa(removed), "unreadable": strconv.Itoa(len(damaged))}
				for _, d := range damaged {
					g.log.Warn("version not indexed: it does not verify; run `custody check`", "err", d)
				}
				if g.json {
					return printJSON(g.stdout, map[string]any{"versions": len(all), "added": added, "removed": removed, "unreadable": len(damaged)})
				}
				fmt.Fprintf(g.stdout, "%d versions indexed: %d added, %d removed", len(all), added, removed)
				if len(damaged) > 0 {
					fmt.Fprintf(g.stdout, ", %d unreadable left out", len(damaged))
				}
				fmt.Fprintln(g.stdout)
				return nil
			})
		},
	}
}

func newCatalogDatasetsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "datasets",
		Short: "List datasets with their version counts and latest versions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			return g.withAudit(ctx, func(_ *vault.Vault, _ *audit.Recorder, db *catalog.DB) error {
				ds, err := db.Datasets(ctx)
				if err != nil {
					return err
				}
				if g.json {
					type row struct {
						Name       string    `json:"name"`
						Created    time.Time `json:"created"`
						Versions   int       `json:"versions"`
						Latest     string    `json:"latest,omitempty"`
						LatestTime time.Time `json:"latest_time,omitzero"`
					}
					rows := []row{}
					for _, d := range ds {
						rows = append(rows, row{d.Name, d.Created, d.Versions, d.Latest, d.LatestTime})
					}
					return printJSON(g.stdout, rows)
				}
				tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "DATASET\tVERSIONS\tLATEST\tLATEST TIME")
				for _, d := range ds {
					latest, when := "-", "-"
					if d.Latest != "" {
						latest, when = d.Latest[:min(12, len(d.Latest))], d.LatestTime.Local().Format("2006-01-02 15:04:05")
					}
					fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", d.Name, d.Versions, latest, when)
				}
				return tw.Flush()
			})
		},
	}
}

func newCatalogPrincipalsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "principals",
		Short: "List who has acted on this vault: OS users and API identities",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			return g.withAudit(ctx, func(_ *vault.Vault, _ *audit.Recorder, db *catalog.DB) error {
				ps, err := db.Principals(ctx)
				if err != nil {
					return err
				}
				if g.json {
					type row struct {
						Kind      string    `json:"kind"`
						Name      string    `json:"name"`
						UID       *uint32   `json:"uid,omitempty"`
						FirstSeen time.Time `json:"first_seen"`
						LastSeen  time.Time `json:"last_seen"`
						Actions   int64     `json:"actions"`
					}
					rows := []row{}
					for _, p := range ps {
						rows = append(rows, row{p.Kind, p.Name, p.UID, p.FirstSeen, p.LastSeen, p.Actions})
					}
					return printJSON(g.stdout, rows)
				}
				tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "KIND\tNAME\tUID\tACTIONS\tFIRST SEEN\tLAST SEEN")
				for _, p := range ps {
					uid := "-"
					if p.UID != nil {
						uid = strconv.FormatUint(uint64(*p.UID), 10)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", p.Kind, p.Name, uid, p.Actions,
						p.FirstSeen.Local().Format("2006-01-02 15:04:05"), p.LastSeen.Local().Format("2006-01-02 15:04:05"))
				}
				return tw.Flush()
			})
		},
	}
}
