package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/custodyhq/custody/internal/audit"
	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/config"
	"github.com/custodyhq/custody/internal/report"
	"github.com/custodyhq/custody/internal/vault"
)

func newReportCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "report", Short: "Reports from the vault and the audit ledger"}
	c.AddCommand(newReportCustodyCmd(g))
	return c
}

func newReportCustodyCmd(g *globals) *cobra.Command {
	var since, htmlFile string
	cmd := &cobra.Command{
		Use:   "custody (DATASET | PATH) [--since T] [--json | --html FILE]",
		Short: "Chain of custody: every version, and who changed what between them, when, with which process",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := report.Options{Now: time.Now()}
			if since != "" {
				t, err := config.ParseWhen(since, time.Now())
				if err != nil {
					return usagef("report: --since: %v", err)
				}
				opts.Since = t
			}
			// A path (it has a slash, or exists) or a dataset name.
			if strings.ContainsRune(args[0], '/') || exists(args[0]) {
				abs, err := filepath.Abs(args[0])
				if err != nil {
					return usagef("report: %v", err)
				}
				opts.Path = abs
			} else {
				opts.Dataset = args[0]
			}
			ctx := cmd.Context()
			return g.withAudit(ctx, func(v *vault.Vault, _ *audit.Recorder, db *catalog.DB) error {
				rep, err := report.Build(ctx, v, db, opts)
				if err != nil {
					return err
				}
				switch {
				case htmlFile != "":
					f, err := os.OpenFile(htmlFile, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
					if err != nil {
						return fmt.Errorf("report: %w", err)
					}
					if err := rep.WriteHTML(f); err != nil {
						f.Close()
						return fmt.Errorf("report: write %s: %w", htmlFile, err)
					}
					if err := f.Close(); err != nil {
						return fmt.Errorf("report: write %s: %w", htmlFile, err)
					}
					fmt.Fprintf(g.stderr, "report written to %s\n", htmlFile)
					return nil
				case g.json:
					return printJSON(g.stdout, rep)
				}
				return rep.WriteText(g.stdout)
			})
		},
	}
	cmd.Flags().StringVar(&since, "since", "", "only versions and changes since this time (a date, RFC 3339, or an age like 30d)")
	cmd.Flags().StringVar(&htmlFile, "html", "", "write a self-contained HTML page to this file")
	return cmd
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
