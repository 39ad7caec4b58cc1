package cli

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/custodyhq/custody/internal/audit"
	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/config"
	"github.com/custodyhq/custody/internal/ledger"
	"github.com/custodyhq/custody/internal/vault"
)

func newAuditCmd(g *globals) *cobra.Command {
	a := &cobra.Command{Use: "audit", Short: "The tamper-evident audit trail: search, verify, prove, export"}
	a.AddCommand(newAuditLogCmd(g), newAuditVerifyCmd(g), newAuditProveCmd(g), newAuditCheckpointCmd(g), newAuditKeyCmd(g), newAuditExportCmd(g))
	return a
}

// withAudit opens the vault, the catalog and the recorder for an audit command.
func (g *globals) withAudit(ctx context.Context, fn func(v *vault.Vault, rec *audit.Recorder, db *catalog.DB) error) error {
	v, err := g.openVault(ctx)
	if err != nil {
		return err
	}
	defer closeVault(v)
	rec, db, err := g.recorder(ctx, v)
	if err != nil {
		return err
	}
	return fn(v, rec, db)
}

type auditFilter struct{ dataset, path, user, kind, since, until string }

func (f *auditFilter) flags(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVarP(&f.dataset, "dataset", "d", "", "only this dataset")
	fl.StringVar(&f.path, "path", "", "only this path and what is under it")
	fl.StringVar(&f.user, "user", "", "only this user")
	fl.StringVar(&f.kind, "kind", "", "only this kind of action (snapshot, restore, forget, prune, key.add, ...)")
	fl.StringVar(&f.since, "since", "", "from this time (2026-11-01, RFC 3339, or an age like 7d)")
	fl.StringVar(&f.until, "until", "", "up to this time")
}

func (f *auditFilter) query() (catalog.Query, error) {
	q := catalog.Query{Dataset: f.dataset, Path: f.path, User: f.user, Kind: f.kind, After: -1}
	var err error
	if q.Since, err = config.ParseWhen(f.since, time.Now()); err != nil {
		return q, usagef("--since: %v", err)
	}
	if q.Until, err = config.ParseWhen(f.until, time.Now()); err != nil {
		return q, usagef("--until: %v", err)
	}
	return q, nil
}

// each runs fn on every entry that q matches, page by page.
func each(ctx context.Context, db *catalog.DB, q catalog.Query, fn func(int64, *ledger.Entry, []byte) error) error {
	q.Limit = 1000
	for {
		hits, err := db.Search(ctx, q)
		if err != nil {
			return err
		}
		for _, h := range hits {
			e, err := ledger.ParseLeaf(h.Record)
			if err != nil {
				return fmt.Errorf("audit entry %d: %w (run 'custody audit verify')", h.Index, err)
			}
			if err := fn(h.Index, e, h.Record); err != nil {
				return err
			}
		}
		if len(hits) < q.Limit {
			return nil
		}
		q.After = hits[len(hits)-1].Index
	}
}

func newAuditLogCmd(g *globals) *cobra.Command {
	var f auditFilter
	cmd := &cobra.Command{
		Use:   "log",
		Short: "Search the audit trail: who did what, when, on which dataset and path",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if c, err := g.remote(); c != nil || err != nil {
				if err != nil {
					return err
				}
				return g.remoteAuditLog(cmd.Context(), c, f)
			}
			q, err := f.query()
			if err != nil {
				return err
			}
			return g.withAudit(cmd.Context(), func(_ *vault.Vault, _ *audit.Recorder, db *catalog.DB) error {
				type row struct {
					Index int64 `json:"index"`
					*ledger.Entry
				}
				rows := []row{}
				var tw *tabwriter.Writer
				if !g.json {
					tw = tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "INDEX\tTIME\tKIND\tUSER\tDATASET\tPATH\tOUTCOME")
				}
				err := each(cmd.Context(), db, q, func(i int64, e *ledger.Entry, _ []byte) error {
					if g.json {
						rows = append(rows, row{i, e})
						return nil
					}
					_, err := fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", i, e.Time.Local().Format("2006-01-02 15:04:05"), e.Kind, e.Actor.User, e.Dataset, displayPath(e.Path), e.Outcome)
					return err
				})
				if err != nil {
					return err
				}
				if g.json {
					return printJSON(g.stdout, rows)
				}
				return tw.Flush()
			})
		},
	}
	f.flags(cmd)
	return cmd
}

func newAuditVerifyCmd(g *globals) *cobra.Command {
	var files []string
	cmd := &cobra.Command{
		Use:   "verify [--checkpoint FILE]...",
		Short: "Verify the whole audit trail against every signed checkpoint; exit 1 naming the first bad entry",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var held [][]byte
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					return usagef("--checkpoint: %v", err)
				}
				held = append(held, b)
			}
			return g.withAudit(cmd.Context(), func(_ *vault.Vault, rec *audit.Recorder, _ *catalog.DB) error {
				start := time.Now()
				n, err := rec.Verify(cmd.Context(), held)
				if err != nil {
					return err
				}
				if g.json {
					return printJSON(g.stdout, map[string]any{"ok": true, "entries": n, "seconds": time.Since(start).Seconds()})
				}
				fmt.Fprintf(g.stdout, "audit trail intact: %d entries verified in %.2fs\n", n, time.Since(start).Seconds())
				return nil
			})
		},
	}
	cmd.Flags().StringArrayVar(&files, "checkpoint", nil, "a signed checkpoint kept elsewhere (repeatable): the log must extend it")
	return cmd
}

func newAuditProveCmd(g *globals) *cobra.Command {
	var from string
	cmd := &cobra.Command{
		Use:   "prove INDEX | --consistency FILE",
		Short: "Print an entry's inclusion proof, or the proof that the log extends a kept checkpoint, against a fresh signed checkpoint",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if (len(args) == 1) == (from != "") {
				return usagef("prove: give an entry number from 'custody audit log', or --consistency FILE, not both")
			}
			if from != "" {
				old, err := os.ReadFile(from)
				if err != nil {
					return usagef("--consistency: %v", err)
				}
				return g.withAudit(ctx, func(_ *vault.Vault, rec *audit.Recorder, _ *catalog.DB) error {
					proof, signed, err := rec.ProveConsistency(ctx, old)
					if err != nil {
						return err
					}
					hashes := base64Hashes(proof)
					if g.json {
						return printJSON(g.stdout, map[string]any{"old_checkpoint": string(old), "proof": hashes, "checkpoint": string(signed), "verifier_key": rec.VerifierKey()})
					}
					fmt.Fprintf(g.stdout, "consistency proof (RFC 6962, base64):\n  %s\ncheckpoint:\n%s", strings.Join(hashes, "\n  "), signed)
					return nil
				})
			}
			var index int64
			if _, err := fmt.Sscan(args[0], &index); err != nil || index < 0 {
				return usagef("prove: INDEX is an entry number from 'custody audit log'")
			}
			return g.withAudit(ctx, func(_ *vault.Vault, rec *audit.Recorder, db *catalog.DB) error {
				proof, signed, err := rec.Prove(ctx, index)
				if err != nil {
					return err
				}
				var record []byte
				err = db.Records(ctx, index)(func(_ int64, r []byte) bool { record = r; return false })
				if err != nil {
					return err
				}
				hashes := base64Hashes(proof)
				if g.json {
					return printJSON(g.stdout, map[string]any{"index": index, "record": string(record), "proof": hashes, "checkpoint": string(signed), "verifier_key": rec.VerifierKey()})
				}
				fmt.Fprintf(g.stdout, "entry %d: %s\nproof (RFC 6962 audit path, base64):\n  %s\ncheckpoint:\n%s", index, record, strings.Join(hashes, "\n  "), signed)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&from, "consistency", "", "a signed checkpoint kept earlier: prove the current log extends it")
	return cmd
}

func base64Hashes(hs []tlog.Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = base64.StdEncoding.EncodeToString(h[:])
	}
	return out
}

func newAuditCheckpointCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "checkpoint",
		Short: "Print the latest signed checkpoint (C2SP signed note); keep it to detect later rewrites",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withAudit(cmd.Context(), func(_ *vault.Vault, rec *audit.Recorder, _ *catalog.DB) error {
				signed, err := rec.Checkpoint(cmd.Context())
				if err != nil {
					return err
				}
				_, err = g.stdout.Write(signed)
				return err
			})
		},
	}
}

func newAuditKeyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "key",
		Short: "Print the verifier key of the audit trail (note verifier-key format) for auditors",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withAudit(cmd.Context(), func(_ *vault.Vault, rec *audit.Recorder, _ *catalog.DB) error {
				_, err := fmt.Fprintln(g.stdout, rec.VerifierKey())
				return err
			})
		},
	}
}

func newAuditExportCmd(g *globals) *cobra.Command {
	var format string
	var f auditFilter
	cmd := &cobra.Command{
		Use:   "export --format jsonl|cef [--since T]",
		Short: "Export the audit trail for a SIEM: JSON lines (the exact signed records) or ArcSight CEF",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "jsonl" && format != "cef" {
				return usagef("export: --format is jsonl or cef")
			}
			q, err := f.query()
			if err != nil {
				return err
			}
			return g.withAudit(cmd.Context(), func(_ *vault.Vault, _ *audit.Recorder, db *catalog.DB) error {
				return each(cmd.Context(), db, q, func(i int64, e *ledger.Entry, raw []byte) error {
					var err error
					if format == "jsonl" {
						_, err = fmt.Fprintf(g.stdout, "%s\n", raw)
					} else {
						_, err = fmt.Fprintln(g.stdout, cefLine(i, e))
					}
					return err
				})
			})
		},
	}
	cmd.Flags().StringVar(&format, "format", "jsonl", "jsonl or cef")
	f.flags(cmd)
	return cmd
}

// cefLine formats an entry as ArcSight Common Event Format.
func cefLine(i int64, e *ledger.Entry) string {
	hdr := strings.NewReplacer(`\`, `\\`, `|`, `\|`)
	ext := strings.NewReplacer(`\`, `\\`, `=`, `\=`, "\n", `\n`, "\r", `\r`)
	sev := 3
	if e.Outcome != "ok" {
		sev = 6
	}
	var b strings.Builder
	fmt.Fprintf(&b, "CEF:0|Custody|custody|1|%s|%s|%d|", hdr.Replace(e.Kind), hdr.Replace(e.Kind), sev)
	fmt.Fprintf(&b, "rt=%d externalId=%d suser=%s", e.Time.UnixMilli(), i, ext.Replace(e.Actor.User))
	if e.Actor.UID != nil {
		fmt.Fprintf(&b, " suid=%d", *e.Actor.UID)
	}
	if e.Actor.PID != 0 {
		fmt.Fprintf(&b, " spid=%d", e.Actor.PID)
	}
	if e.Path != "" {
		fmt.Fprintf(&b, " filePath=%s", ext.Replace(e.Path))
	}
	if e.Dataset != "" {
		fmt.Fprintf(&b, " cs1Label=dataset cs1=%s", ext.Replace(e.Dataset))
	}
	if e.Version != "" {
		fmt.Fprintf(&b, " cs2Label=version cs2=%s", ext.Replace(e.Version))
	}
	fmt.Fprintf(&b, " outcome=%s", ext.Replace(e.Outcome))
	return b.String()
}
