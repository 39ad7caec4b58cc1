package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/custodyhq/custody/internal/ledger"

	"github.com/custodyhq/custody/internal/vault"
)

func newInitCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "init",
		Short: "Create a new, empty vault",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			be, err := g.openBackend(cmd.Context(), true)
			if err != nil {
				return err
			}
			defer be.Close()
			pass, err := g.passphrase("", true)
			if err != nil {
				return err
			}
			if err := vault.Init(cmd.Context(), be, pass, vault.InitOptions{KDF: g.kdf}); err != nil {
				return err
			}
			v, err := vault.Open(cmd.Context(), be, pass, vault.Options{CacheDir: g.cacheDir, Logger: g.log})
			if err != nil {
				return err
			}
			defer v.Close()
			entry := ledger.Entry{Kind: "init", Path: be.Location()}
			if err := g.audited(cmd.Context(), v, &entry, nil); err != nil {
				return err
			}
			if g.json {
				return printJSON(g.stdout, map[string]string{"vault": be.Location(), "id": v.ID()})
			}
			fmt.Fprintf(g.stdout, "created vault %s at %s\nKeep the passphrase safe: without it the data cannot be read.\n", v.ID()[:8], be.Location())
			return nil
		},
	}
}
