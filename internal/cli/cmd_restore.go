package cli

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/custodyhq/custody/internal/ledger"

	"github.com/custodyhq/custody/internal/snapshot"
)

func newRestoreCmd(g *globals) *cobra.Command {
	var target, dataset string
	var overwrite bool
	cmd := &cobra.Command{
		Use:   "restore VERSION[:sub/path] --target DIR",
		Short: "Restore a version (or a path in it) into a directory",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			ctx := cmd.Context()
			if target == "" {
				return usagef("restore: --target DIR is required")
			}
			v, err := g.openVault(ctx)
			if err != nil {
				return err
			}
			defer closeVault(v)
			entry := ledger.Entry{Kind: "restore", Path: target, Detail: map[string]string{"source": args[0]}}
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
	return cmd
}
