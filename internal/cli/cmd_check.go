package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/custodyhq/custody/internal/check"
)

// errDamaged makes check exit 1 after printing its report.
var errDamaged = errors.New("the vault is damaged (see the report above)")

func newCheckCmd(g *globals) *cobra.Command {
	var readData bool
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Verify the vault: signatures, hashes, authentication tags, the index; --read-data for all contents",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := g.openVault(cmd.Context())
			if err != nil {
				return err
			}
			defer closeVault(v)
			bar := newProgress(g.stderr, -1, "check")
			r, err := check.Run(cmd.Context(), v, check.Options{ReadData: readData, Progress: func(done, total int) { bar.set(uint64(done), uint64(done)) }})
			bar.done()
			if err != nil {
				return err
			}
			if g.json {
				if err := printJSON(g.stdout, map[string]any{
					"ok": r.OK(), "read_data": r.ReadData, "keys": r.Keys, "index_objects": r.IndexObjects, "packs": r.Packs,
					"versions": r.Versions, "trees": r.Trees, "blobs": r.Blobs, "problems": orEmpty(r.Problems),
					"affected": orEmpty(r.Affected), "unindexed_packs": orEmpty(r.UnindexedPacks),
				}); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(g.stdout, "checked %d versions, %d trees, %d packs (%d blobs), %d index objects", r.Versions, r.Trees, r.Packs, r.Blobs, r.IndexObjects)
				if r.ReadData {
					fmt.Fprint(g.stdout, ", all contents read")
				}
				fmt.Fprintln(g.stdout)
				for _, p := range r.Problems {
					fmt.Fprintf(g.stdout, "damaged: %s: %s\n", p.Object, p.Error)
				}
				for _, a := range r.Affected {
					fmt.Fprintf(g.stdout, "version %s (%s) is affected:\n", a.Version[:12], a.Dataset)
					for _, p := range a.Paths {
						fmt.Fprintf(g.stdout, "  %s\n", displayPath(p))
					}
				}
				if n := len(r.UnindexedPacks); n > 0 {
					fmt.Fprintf(g.stdout, "note: %d packs from interrupted writes are not referenced; 'custody prune' removes them\n", n)
				}
				if r.OK() {
					fmt.Fprintln(g.stdout, "no damage found")
				}
			}
			if !r.OK() {
				return errDamaged
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&readData, "read-data", false, "also read and verify every pack's full contents")
	return cmd
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
