package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/custodyhq/custody/internal/backend"
	"github.com/custodyhq/custody/internal/backend/s3"
	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/config"
	"github.com/custodyhq/custody/internal/ledger"
	"github.com/custodyhq/custody/internal/offsite"
	"github.com/custodyhq/custody/internal/vault"

	"github.com/custodyhq/custody/internal/snapshot"
)

func newRestoreCmd(g *globals) *cobra.Command {
	var target, dataset, offsiteName, asOf string
	var overwrite bool
	cmd := &cobra.Command{
		Use:   "restore VERSION[:sub/path] --target DIR [--offsite NAME] [--as-of TIME]",
		Short: "Restore a version (or a path in it) into a directory",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			ctx := cmd.Context()
			if target == "" {
				return usagef("restore: --target DIR is required")
			}
			var when time.Time
			if asOf != "" {
				if when, err = config.ParseWhen(asOf, time.Now()); err != nil {
					return usagef("restore: --as-of: %v", err)
				}
			}
			v, err := g.openRestoreSource(ctx, offsiteName, when)
			if err != nil {
				return err
			}
			defer closeVault(v)
			entry := ledger.Entry{Kind: "restore", Path: target, Detail: map[string]string{"source": args[0], "from": v.Backend().Location()}}
			defer func() { err = g.audited(ctx, v, &entry, err) }()
			prefix, sub := splitTarget(args[0])
			ver, err := v.ResolveVersion(ctx, prefix, dataset)
			if err != nil {
				return err
			}
			entry.Dataset, entry.Version = ver.Dataset, ver.ID.String()
			start := time.Now()
			bar := newProgress(g.stderr, int64(ver.Bytes), "restore")
			res, err := snapshot.Restore(ctx, v, ver.Tree, sub, target, snapshot.RestoreOptions{
				Overwrite: overwrite,
				Progress:  func(p snapshot.RestoreProgress) { bar.set(p.Bytes, p.Files) },
				Warn:      func(path string, err error) { g.log.Warn("restore", "path", displayPath(path), "err", err) },
			})
			bar.done()
			if errors.Is(err, snapshot.ErrTargetNotEmpty) {
				return fmt.Errorf("restore: %s is not empty: choose an empty directory or pass --overwrite", target)
			}
			if err != nil {
				return fmt.Errorf("restore: %w", err)
			}
			secs := time.Since(start).Seconds()
			if g.json {
				return printJSON(g.stdout, map[string]any{
					"version": ver.ID.String(), "target": target, "files": res.Files, "dirs": res.Dirs, "symlinks": res.Symlinks,
					"hardlinks": res.Hardlinks, "bytes": res.Bytes, "seconds": secs,
				})
			}
			fmt.Fprintf(g.stdout, "restored version %s to %s: %d files, %d dirs, %s in %.2fs\n", ver.ID.Short(), target, res.Files, res.Dirs, humanBytes(res.Bytes), secs)
			return nil
		},
	}
	cmd.Flags().StringVarP(&target, "target", "t", "", "directory to restore into (created if missing; must be empty unless --overwrite)")
	cmd.Flags().BoolVar(&overwrite, "overwrite", false, "restore into a non-empty directory, replacing what differs")
	cmd.Flags().StringVarP(&dataset, "dataset", "d", "", "with VERSION 'latest': the newest version of this dataset")
	cmd.Flags().StringVar(&offsiteName, "offsite", "", "restore from this offsite's bucket instead of the vault")
	cmd.Flags().StringVar(&asOf, "as-of", "", "restore from the bucket as it was at this time (2026-11-01T12:00:00Z, a date, or an age like 2h): objects deleted or overwritten since are read as they were")
	return cmd
}

// openRestoreSource opens the vault a restore reads: the vault itself, an
// offsite's copy, or either as the bucket held it at when.
func (g *globals) openRestoreSource(ctx context.Context, offsiteName string, when time.Time) (*vault.Vault, error) {
	if offsiteName == "" && when.IsZero() {
		return g.openVault(ctx)
	}
	var b *s3.S3
	switch {
	case offsiteName != "":
		// The offsite's record is in the catalog; the vault itself may be
		// the thing that was lost.
		db, err := catalog.Open(ctx, g.catalogDSN())
		if err != nil {
			return nil, fmt.Errorf("open the catalog to find offsite %s: %w", offsiteName, err)
		}
		rec, err := db.Offsite(ctx, offsiteName)
		db.Close()
		if err != nil {
			return nil, err
		}
		t, err := offsite.Open(ctx, rec, g.awsKeys())
		if err != nil {
			return nil, err
		}
		b = t.S3
	case strings.HasPrefix(g.vault, "s3://"):
		var err error
		if b, err = g.openS3(ctx, g.vault); err != nil {
			return nil, err
		}
	default:
		return nil, usagef("restore: --as-of reads a bucket's object versions: give --offsite NAME, or an s3:// --vault")
	}
	var be backend.Backend = b
	if !when.IsZero() {
		view, err := b.AsOf(ctx, when)
		if err != nil {
			return nil, err
		}
		be = view
	}
	pass, err := g.passphrase("", false)
	if err != nil {
		return nil, err
	}
	return vault.Open(ctx, be, pass, vault.Options{CacheDir: g.cacheDir, Logger: g.log})
}
