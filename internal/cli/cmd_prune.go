package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/custodyhq/custody/internal/config"
	"github.com/custodyhq/custody/internal/ledger"

	"github.com/custodyhq/custody/internal/prune"
)

func newPruneCmd(g *globals) *cobra.Command {
	opts := prune.DefaultOptions
	var margin string
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Free the space of data no version needs (two-phase: marked now, deleted after a safety margin)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			if margin != "" {
				d, err := config.ParseAge(margin)
				if err != nil {
					return usagef("prune: --safety-margin: %v", err)
				}
				opts.SafetyMargin = d
			}
			if opts.MaxUnused < 0 || opts.MaxUnused > 1 {
				return usagef("prune: --max-unused must be between 0 and 1")
			}
			v, err := g.openVault(cmd.Context())
			if err != nil {
				return err
			}
			defer closeVault(v)
			if !opts.DryRun {
				entry := ledger.Entry{Kind: "prune", Detail: map[string]string{"safety_margin": opts.SafetyMargin.String()}}
				defer func() { err = g.audited(cmd.Context(), v, &entry, err) }()
			}
			if !opts.DryRun {
				if err := g.checkGate(cmd.Context(), v, "prune"); err != nil {
					return err
				}
			}
			st, err := prune.Run(cmd.Context(), v, opts)
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(g.stdout, st)
			}
			fmt.Fprintf(g.stdout, "%d versions use %d blobs in %d packs\n", st.Versions, st.UsedBlobs, st.Packs)
			fmt.Fprintf(g.stdout, "deleted %d packs (%s); marked %d packs (%s) and repacked %d for deletion after %s\n",
				st.PacksDeleted, humanBytes(uint64(st.BytesDeleted)), st.PacksMarked, humanBytes(uint64(st.BytesMarked)), st.PacksRepacked, opts.SafetyMargin)
			if opts.DryRun {
				fmt.Fprintln(g.stdout, "dry run: nothing changed")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&margin, "safety-margin", "", "how long marked packs wait before deletion (default 1h; 0 only when nothing else writes to the vault)")
	f.Float64Var(&opts.MaxUnused, "max-unused", opts.MaxUnused, "repack packs with more than this share of unused bytes")
	f.BoolVar(&opts.DryRun, "dry-run", false, "report, change nothing")
	return cmd
}
