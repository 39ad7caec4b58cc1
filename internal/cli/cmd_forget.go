package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/custodyhq/custody/internal/config"
	"github.com/custodyhq/custody/internal/ledger"

	"github.com/custodyhq/custody/internal/prune"
)

func newForgetCmd(g *globals) *cobra.Command {
	var dataset, within string
	var last int
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "forget (--dataset D (--keep-last N | --keep-within DURATION) | VERSION...)",
		Short: "Remove versions: those a dataset's policy does not keep, or the ones named (prune then frees their data)",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				if dataset != "" || last != 0 || within != "" {
					return usagef("forget: give either VERSION arguments or --dataset with keep rules, not both")
				}
				return forgetVersions(cmd, g, args, dryRun)
			}
			if dataset == "" {
				return usagef("forget: --dataset is required")
			}
			d, err := config.ParseAge(within)
			if err != nil {
				return usagef("forget: --keep-within: %v", err)
			}
			p := prune.Policy{KeepLast: last, KeepWithin: d}
			if p.Empty() {
				return usageError{prune.ErrEmptyPolicy}
			}
			v, err := g.openVault(cmd.Context())
			if err != nil {
				return err
			}
			defer closeVault(v)
			var ds []prune.Decision
			if !dryRun {
				err = g.checkGate(cmd.Context(), v, "forget", dataset)
			}
			if err == nil {
				ds, err = prune.Forget(cmd.Context(), v, dataset, p, dryRun)
			}
			if !dryRun {
				entry := ledger.Entry{Kind: "forget", Dataset: dataset, Detail: map[string]string{"keep_last": fmt.Sprint(last), "keep_within": within}}
				for _, d := range ds {
					if !d.Keep {
						entry.Detail["removed"] += d.Version.ID.String()[:12] + " "
						if err == nil {
							g.unindexVersion(d.Version.ID)
						}
					}
				}
				err = g.audited(cmd.Context(), v, &entry, err)
			}
			if err != nil {
				return err
			}
			if g.json {
				type row struct {
					Version string    `json:"version"`
					Time    time.Time `json:"time"`
					Keep    bool      `json:"keep"`
					Reasons []string  `json:"reasons"`
				}
				rows := []row{}
				for _, d := range ds {
					rows = append(rows, row{Version: d.Version.ID.String(), Time: d.Version.Time, Keep: d.Keep, Reasons: orEmpty(d.Reasons)})
				}
				return printJSON(g.stdout, map[string]any{"dataset": dataset, "dry_run": dryRun, "versions": rows})
			}
			removed := 0
			for _, d := range ds {
				verb := "keep  "
				if !d.Keep {
					verb = "remove"
					removed++
					if dryRun {
						verb = "would remove"
					}
				}
				fmt.Fprintf(g.stdout, "%s %s %s %s\n", verb, d.Version.ID.String()[:12], d.Version.Time.Local().Format("2006-01-02 15:04:05"), strings.Join(d.Reasons, ", "))
			}
			fmt.Fprintf(g.stdout, "%d kept, %d removed%s\n", len(ds)-removed, removed, map[bool]string{true: " (dry run: nothing changed)", false: ""}[dryRun])
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&dataset, "dataset", "d", "", "dataset whose versions to thin out")
	f.IntVar(&last, "keep-last", 0, "keep the newest N versions")
	f.StringVar(&within, "keep-within", "", "keep versions stored within this long (e.g. 30d, 2w, 36h); ages use the store's clock")
	f.BoolVar(&dryRun, "dry-run", false, "show what would be removed, change nothing")
	return cmd
}

// forgetVersions removes the named versions. It resolves ids without
// loading them, so a damaged version that check reported can be removed.
func forgetVersions(cmd *cobra.Command, g *globals, prefixes []string, dryRun bool) (err error) {
	ctx := cmd.Context()
	v, err := g.openVault(ctx)
	if err != nil {
		return err
	}
	defer closeVault(v)
	var removed []string
	if !dryRun {
		defer func() {
			e := ledger.Entry{Kind: "forget", Detail: map[string]string{"removed": strings.Join(removed, " ")}}
			err = g.audited(ctx, v, &e, err)
		}()
	}
	if !dryRun {
		// Which datasets named versions belong to is not known before
		// they are read, and a damaged one cannot be: any closed gate
		// stops this.
		if err := g.checkGate(ctx, v, "forget"); err != nil {
			return err
		}
	}
	for _, p := range prefixes {
		id, err := v.ResolveVersionID(ctx, p)
		if err != nil {
			return err
		}
		if !dryRun {
			if err := v.DeleteVersion(ctx, id); err != nil {
				return fmt.Errorf("forget version %s: %w", id.Short(), err)
			}
			g.unindexVersion(id)
		}
		removed = append(removed, id.String())
	}
	if g.json {
		return printJSON(g.stdout, map[string]any{"dry_run": dryRun, "removed": removed})
	}
	for _, id := range removed {
		verb := "removed"
		if dryRun {
			verb = "would remove"
		}
		fmt.Fprintf(g.stdout, "%s %s\n", verb, id[:12])
	}
	return nil
}
