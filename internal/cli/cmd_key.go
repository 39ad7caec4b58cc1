package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/custodyhq/custody/internal/ledger"
)

func newKeyCmd(g *globals) *cobra.Command {
	key := &cobra.Command{Use: "key", Short: "Manage the passphrases that open the vault"}
	key.AddCommand(&cobra.Command{
		Use:   "add",
		Short: "Add a passphrase (read from CUSTODY_NEW_PASSWORD, CUSTODY_NEW_PASSWORD_FILE or the terminal)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			v, err := g.openVault(cmd.Context())
			if err != nil {
				return err
			}
			defer closeVault(v)
			entry := ledger.Entry{Kind: "key.add", Detail: map[string]string{}}
			defer func() { err = g.audited(cmd.Context(), v, &entry, err) }()
			pass, err := g.passphrase("CUSTODY_NEW_PASSWORD", true)
			if err != nil {
				return err
			}
			name, err := v.AddKey(cmd.Context(), pass, g.kdf)
			if err != nil {
				return err
			}
			entry.Detail["key"] = name
			if g.json {
				return printJSON(g.stdout, map[string]string{"key": name})
			}
			fmt.Fprintf(g.stdout, "added key %s\n", name[:12])
			return nil
		},
	}, &cobra.Command{
		Use:   "list",
		Short: "List the vault's keys",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := g.openVault(cmd.Context())
			if err != nil {
				return err
			}
			defer closeVault(v)
			keys, err := v.Keys(cmd.Context())
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(g.stdout, keys)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, " \tKEY\tCREATED\tUSER\tHOST")
			for _, k := range keys {
				cur := " "
				if k.Current {
					cur = "*"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", cur, k.Name[:12], k.Created.Local().Format("2006-01-02 15:04:05"), k.User, k.Host)
			}
			return tw.Flush()
		},
	}, &cobra.Command{
		Use:   "remove KEY",
		Short: "Remove a key (not the one in use)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			v, err := g.openVault(cmd.Context())
			if err != nil {
				return err
			}
			defer closeVault(v)
			entry := ledger.Entry{Kind: "key.remove", Detail: map[string]string{"key": args[0]}}
			defer func() { err = g.audited(cmd.Context(), v, &entry, err) }()
			name, err := v.RemoveKey(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(g.stdout, map[string]string{"removed": name})
			}
			fmt.Fprintf(g.stdout, "removed key %s\n", name[:12])
			return nil
		},
	})
	return key
}
