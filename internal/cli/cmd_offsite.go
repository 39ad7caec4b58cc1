package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/custodyhq/custody/internal/audit"
	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/config"
	"github.com/custodyhq/custody/internal/ledger"
	"github.com/custodyhq/custody/internal/offsite"
	"github.com/custodyhq/custody/internal/vault"
)

func newOffsiteCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "offsite", Short: "Copies of the vault in S3 buckets with versioning and Object Lock"}
	c.AddCommand(newOffsiteAddCmd(g), newOffsitePushCmd(g), newOffsiteStatusCmd(g), newOffsiteAuditCmd(g))
	return c
}

// openOffsite opens the named offsite's bucket with the credentials in
// the environment.
func (g *globals) openOffsite(ctx context.Context, db *catalog.DB, name string) (*offsite.Target, error) {
	rec, err := db.Offsite(ctx, name)
	if err != nil {
		return nil, err
	}
	return offsite.Open(ctx, rec, g.awsKeys())
}

func newOffsiteAddCmd(g *globals) *cobra.Command {
	var mode string
	var days int
	cmd := &cobra.Command{
		Use:   "add NAME s3://bucket/prefix [--lock-mode compliance|governance --lock-days N]",
		Short: "Add an offsite: a versioned bucket (with Object Lock to lock what is pushed)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := offsite.ParseLockMode(mode)
			if err != nil {
				return usageError{err}
			}
			if (m == "") != (days == 0) || days < 0 {
				return usagef("offsite add: --lock-mode and --lock-days go together (days > 0)")
			}
			if !strings.HasPrefix(args[1], "s3://") {
				return usagef("offsite add: the location must be s3://bucket/prefix")
			}
			ctx := cmd.Context()
			return g.withAudit(ctx, func(v *vault.Vault, _ *audit.Recorder, db *catalog.DB) (err error) {
				entry := ledger.Entry{Kind: "offsite.add", Path: args[1], Detail: map[string]string{"offsite": args[0], "lock_mode": m, "lock_days": strconv.Itoa(days)}}
				defer func() { err = g.audited(ctx, v, &entry, err) }()
				f := g.s3WithEnv()
				rec := catalog.Offsite{Name: args[0], URL: args[1], Endpoint: f.endpoint, Region: f.region, InsecureTLS: f.insecure, LockMode: m, LockDays: days, Created: time.Now()}
				if rec, err = offsite.Add(ctx, db, rec, g.awsKeys()); err != nil {
					return err
				}
				if g.json {
					return printJSON(g.stdout, map[string]any{"name": rec.Name, "url": rec.URL, "endpoint": rec.Endpoint, "lock_mode": rec.LockMode, "lock_days": rec.LockDays})
				}
				fmt.Fprintf(g.stdout, "offsite %s added: %s%s; push with `custody offsite push %s`\n", rec.Name, rec.URL, lockText(rec), rec.Name)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&mode, "lock-mode", "", "Object Lock every pushed object: compliance (no one can shorten it) or governance")
	cmd.Flags().IntVar(&days, "lock-days", 0, "how long each pushed object stays locked, extended by each push while the vault still holds it")
	return cmd
}

func lockText(rec catalog.Offsite) string {
	if rec.LockMode == "" {
		return ", no lock"
	}
	return fmt.Sprintf(", each object locked (%s) for %d days", strings.ToLower(rec.LockMode), rec.LockDays)
}

// offsiteNames is the offsites a command acts on: the one named, or all.
func offsiteNames(ctx context.Context, db *catalog.DB, args []string) ([]string, error) {
	if len(args) == 1 {
		return args, nil
	}
	all, err := db.Offsites(ctx)
	if err != nil {
		return nil, err
	}
	if len(all) == 0 {
		return nil, usagef("no offsite yet: add one with `custody offsite add NAME s3://bucket/prefix`")
	}
	var names []string
	for _, o := range all {
		names = append(names, o.Name)
	}
	return names, nil
}

func newOffsitePushCmd(g *globals) *cobra.Command {
	var workers int
	cmd := &cobra.Command{
		Use:   "push [NAME]",
		Short: "Copy what an offsite (default: every offsite) lacks, locked as configured; refuses while the gate is closed",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			return g.withAudit(ctx, func(v *vault.Vault, _ *audit.Recorder, db *catalog.DB) error {
				names, err := offsiteNames(ctx, db, args)
				if err != nil {
					return err
				}
				results := map[string]any{}
				for _, name := range names {
					st, err := g.pushOne(ctx, v, db, name, workers)
					if err != nil {
						return err
					}
					results[name] = st
					if !g.json {
						fmt.Fprintf(g.stdout, "offsite %s: %d objects uploaded (%s), %d found there already, %d retentions extended; %d objects in the vault\n",
							name, st.Uploaded, humanBytes(uint64(st.Bytes)), st.Adopted, st.Extended, st.Local)
					}
				}
				if g.json {
					return printJSON(g.stdout, results)
				}
				return nil
			})
		},
	}
	cmd.Flags().IntVar(&workers, "workers", 8, "parallel uploads")
	return cmd
}

func (g *globals) pushOne(ctx context.Context, v *vault.Vault, db *catalog.DB, name string, workers int) (st offsite.PushStats, err error) {
	entry := ledger.Entry{Kind: "offsite.push", Detail: map[string]string{"offsite": name}}
	defer func() {
		entry.Detail["uploaded"], entry.Detail["bytes"] = strconv.Itoa(st.Uploaded), strconv.FormatInt(st.Bytes, 10)
		entry.Detail["extended"] = strconv.Itoa(st.Extended)
		err = g.audited(ctx, v, &entry, err)
	}()
	t, err := g.openOffsite(ctx, db, name)
	if err != nil {
		return st, err
	}
	bar := newProgress(g.stderr, -1, "push "+name)
	st, err = offsite.Push(ctx, t, v.Backend(), db, offsite.PushOptions{Workers: workers, Progress: func(_, _ int, b int64) { bar.set(uint64(b), 0) }})
	bar.done()
	return st, err
}

func newOffsiteStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status [NAME]",
		Short: "What each offsite holds and lacks, from the catalog (no request reaches the bucket)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if c, err := g.remote(); c != nil || err != nil {
				if err != nil {
					return err
				}
				return g.remoteOffsiteStatus(ctx, c)
			}
			return g.withAudit(ctx, func(v *vault.Vault, _ *audit.Recorder, db *catalog.DB) error {
				names, err := offsiteNames(ctx, db, args)
				if err != nil {
					return err
				}
				var all []offsite.Status
				for _, name := range names {
					rec, err := db.Offsite(ctx, name)
					if err != nil {
						return err
					}
					st, err := offsite.GetStatus(ctx, rec, v.Backend(), db, time.Now())
					if err != nil {
						return err
					}
					all = append(all, st)
				}
				if g.json {
					return printJSON(g.stdout, all)
				}
				tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "OFFSITE\tLOCATION\tLOCK\tPUSHED\tPENDING\tLAST PUSH")
				for _, st := range all {
					lock, last := "-", "never"
					if st.LockMode != "" {
						lock = fmt.Sprintf("%s %dd", strings.ToLower(st.LockMode), st.LockDays)
					}
					if !st.LastPush.IsZero() {
						last = st.LastPush.Local().Format("2006-01-02 15:04:05")
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d (%s)\t%s\n", st.Name, st.URL, lock, st.Pushed, st.Pending, humanBytes(uint64(st.PendingBytes)), last)
				}
				return tw.Flush()
			})
		},
	}
}

func newOffsiteAuditCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "audit NAME",
		Short: "Compare the bucket with what was pushed; exit 1 on any sign of tampering",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			return g.withAudit(ctx, func(v *vault.Vault, _ *audit.Recorder, db *catalog.DB) (err error) {
				entry := ledger.Entry{Kind: "offsite.audit", Detail: map[string]string{"offsite": args[0]}}
				defer func() { err = g.audited(ctx, v, &entry, err) }()
				t, err := g.openOffsite(ctx, db, args[0])
				if err != nil {
					return err
				}
				rep, err := offsite.Audit(ctx, t, db)
				if err != nil {
					return err
				}
				entry.Detail["findings"] = strconv.Itoa(len(rep.Findings))
				if g.json {
					if err := printJSON(g.stdout, rep); err != nil {
						return err
					}
				} else {
					for _, f := range rep.Findings {
						key := f.Key
						if key == "" {
							key = "(bucket)"
						}
						fmt.Fprintf(g.stdout, "%-22s %s: %s\n", f.Kind, key, f.Detail)
					}
					fmt.Fprintf(g.stdout, "offsite %s: %d objects checked, %d findings\n", args[0], rep.Checked, len(rep.Findings))
				}
				if rep.Tampered() {
					return fmt.Errorf("offsite %s shows tampering: %d findings (see above); keep the bucket as evidence and restore with `custody restore --offsite %s --as-of TIME`", args[0], len(rep.Findings), args[0])
				}
				return nil
			})
		},
	}
}

func newLockCmd(g *globals) *cobra.Command {
	var name, mode, until string
	var days int
	var hold bool
	cmd := &cobra.Command{
		Use:   "lock VERSION --offsite NAME (--days N | --until DATE) [--mode compliance|governance] [--legal-hold]",
		Short: "Object-Lock every offsite object a version needs (retention is only ever extended)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if name == "" {
				return usagef("lock: --offsite NAME is required")
			}
			m, err := offsite.ParseLockMode(mode)
			if err != nil {
				return usageError{err}
			}
			req := offsite.LockRequest{LegalHold: hold}
			switch {
			case days > 0 && until != "":
				return usagef("lock: give --days or --until, not both")
			case days > 0:
				req.Until = time.Now().Add(time.Duration(days) * 24 * time.Hour)
			case until != "":
				t, err := config.ParseWhen(until, time.Now())
				if err != nil {
					return usageError{err}
				}
				req.Until = t
			case !hold:
				return usagef("lock: give --days N, --until DATE or --legal-hold")
			}
			if !req.Until.IsZero() {
				req.Mode = m
				if req.Mode == "" {
					req.Mode = "COMPLIANCE"
				}
				req.Until = req.Until.UTC().Truncate(time.Second).Add(time.Second)
			}
			ctx := cmd.Context()
			return g.withAudit(ctx, func(v *vault.Vault, _ *audit.Recorder, db *catalog.DB) (err error) {
				entry := ledger.Entry{Kind: "offsite.lock", Detail: map[string]string{"offsite": name, "mode": req.Mode, "legal_hold": strconv.FormatBool(hold)}}
				if !req.Until.IsZero() {
					entry.Detail["until"] = req.Until.Format(time.RFC3339)
				}
				defer func() { err = g.audited(ctx, v, &entry, err) }()
				ver, err := v.ResolveVersion(ctx, args[0], "")
				if err != nil {
					return err
				}
				entry.Dataset, entry.Version = ver.Dataset, ver.ID.String()
				t, err := g.openOffsite(ctx, db, name)
				if err != nil {
					return err
				}
				n, err := offsite.Lock(ctx, t, v, db, ver, req)
				if err != nil {
					return err
				}
				if g.json {
					return printJSON(g.stdout, map[string]any{"version": ver.ID.String(), "offsite": name, "objects": n, "mode": req.Mode, "until": req.Until, "legal_hold": hold})
				}
				fmt.Fprintf(g.stdout, "version %s locked on %s: %d objects", ver.ID.Short(), name, n)
				if !req.Until.IsZero() {
					fmt.Fprintf(g.stdout, ", %s until %s", strings.ToLower(req.Mode), req.Until.Local().Format("2006-01-02 15:04:05"))
				}
				if hold {
					fmt.Fprint(g.stdout, ", legal hold on")
				}
				fmt.Fprintln(g.stdout)
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "offsite", "", "the offsite holding the version")
	f.IntVar(&days, "days", 0, "lock for this many days from now")
	f.StringVar(&until, "until", "", "lock until this time (2027-01-01 or RFC 3339)")
	f.StringVar(&mode, "mode", "", "compliance (default: no one can shorten it) or governance")
	f.BoolVar(&hold, "legal-hold", false, "also put a legal hold (no expiry; lifted only explicitly)")
	return cmd
}
