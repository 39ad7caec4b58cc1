package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/custodyhq/custody/internal/snapshot"
)

func newDiffCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "diff VERSION_A VERSION_B",
		Short: "Show which paths were added, removed or modified between two versions",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if c, err := g.remote(); c != nil || err != nil {
				if err != nil {
					return err
				}
				return g.remoteDiff(ctx, c, args[0], args[1])
			}
			v, err := g.openVault(ctx)
			if err != nil {
				return err
			}
			defer closeVault(v)
			a, err := v.ResolveVersion(ctx, args[0], "")
			if err != nil {
				return err
			}
			b, err := v.ResolveVersion(ctx, args[1], "")
			if err != nil {
				return err
			}
			d, err := snapshot.Diff(ctx, v, a.Tree, b.Tree)
			if err != nil {
				return err
			}
			if g.json {
				type change struct {
					jsonPath
					What []string `json:"what,omitempty"`
				}
				conv := func(cs []snapshot.Change) []change {
					out := make([]change, 0, len(cs))
					for _, c := range cs {
						out = append(out, change{jsonPath: newJSONPath(c.Path), What: c.What})
					}
					return out
				}
				return printJSON(g.stdout, map[string]any{
					"from": a.ID.String(), "to": b.ID.String(),
					"added": conv(d.Added), "removed": conv(d.Removed), "modified": conv(d.Modified),
				})
			}
			for _, c := range d.Added {
				fmt.Fprintf(g.stdout, "+ %s\n", displayPath(c.Path))
			}
			for _, c := range d.Removed {
				fmt.Fprintf(g.stdout, "- %s\n", displayPath(c.Path))
			}
			for _, c := range d.Modified {
				fmt.Fprintf(g.stdout, "M %s (%s)\n", displayPath(c.Path), strings.Join(c.What, ", "))
			}
			fmt.Fprintf(g.stdout, "%d added, %d removed, %d modified\n", len(d.Added), len(d.Removed), len(d.Modified))
			return nil
		},
	}
}
