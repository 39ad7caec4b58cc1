package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/custodyhq/custody/internal/ledger"

	"github.com/custodyhq/custody/internal/snapshot"
)

var datasetName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// stages are the pipeline stages a version can be bound to.
var stages = []string{"collect", "clean", "explore", "features", "split", "train", "evaluate", "tune", "deploy", "monitor"}

func checkStage(stage string) error {
	if stage == "" || slices.Contains(stages, stage) {
		return nil
	}
	return usagef("stage %q: use one of %s", stage, strings.Join(stages, ", "))
}

func checkDataset(name string) error {
	if !datasetName.MatchString(name) {
		return usagef("dataset name %q: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit (set one with --dataset)", name)
	}
	return nil
}

func newSnapshotCmd(g *globals) *cobra.Command {
	var dataset, message, stage string
	var ignoreInode bool
	cmd := &cobra.Command{
		Use:   "snapshot DIR",
		Short: "Take a new version of a dataset directory",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			ctx := cmd.Context()
			src, err := filepath.Abs(args[0])
			if err != nil {
				return err
			}
			st, err := os.Stat(src)
			if err != nil {
				return usagef("snapshot: %v", err)
			}
			if !st.IsDir() {
				return usagef("snapshot: %s is not a directory", src)
			}
			if dataset == "" {
				dataset = filepath.Base(src)
			}
			if err := checkDataset(dataset); err != nil {
				return err
			}
			if err := checkStage(stage); err != nil {
				return err
			}
			v, err := g.openVault(ctx)
			if err != nil {
				return err
			}
			defer closeVault(v)
			entry := ledger.Entry{Kind: "snapshot", Dataset: dataset, Path: src, Detail: map[string]string{"message": message}}
			defer func() { err = g.audited(ctx, v, &entry, err) }()

			start := time.Now()
			opts := snapshot.ArchiveOptions{IgnoreInode: ignoreInode}
			bar := newProgress(g.stderr, -1, "snapshot")
			opts.Progress = func(p snapshot.ArchiveProgress) { bar.set(p.Bytes, p.Files) }
			opts.Warn = func(path string, err error) { g.log.Warn("snapshot", "path", displayPath(path), "err", err) }
			taken, err := snapshot.Take(ctx, v, dataset, stage, message, src, opts)
			bar.done()
			if err != nil {
				return err
			}
			ver, parent, res, id := taken.Version, taken.Parent, taken.Result, taken.Version.ID
			entry.Version = id.String()
			g.indexVersion(ver)
			secs := time.Since(start).Seconds()
			if g.json {
				out := map[string]any{
					"version": id.String(), "dataset": dataset, "tree": res.Tree.String(), "files": res.Files, "dirs": res.Dirs,
					"bytes": res.Bytes, "new_bytes": res.NewBytes, "stored_bytes": res.StoredBytes, "seconds": secs,
					"skipped": len(res.Skipped), "changed_while_read": len(res.ChangedWhileRead),
					"unchanged": parent != nil && parent.Tree == res.Tree,
				}
				if parent != nil {
					out["parent"] = parent.ID.String()
				}
				return printJSON(g.stdout, out)
			}
			fmt.Fprintf(g.stdout, "version %s of %s: %d files, %s, %s new, %s stored in %.2fs\n",
				id.Short(), dataset, res.Files, humanBytes(res.Bytes), humanBytes(res.NewBytes), humanBytes(res.StoredBytes), secs)
			if n := len(res.Skipped); n > 0 {
				fmt.Fprintf(g.stdout, "warning: %d entries skipped (see the warnings above)\n", n)
			}
			if n := len(res.ChangedWhileRead); n > 0 {
				fmt.Fprintf(g.stdout, "warning: %d files changed while being read; recorded as such\n", n)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&dataset, "dataset", "d", "", "dataset name (default: the directory's base name)")
	cmd.Flags().StringVarP(&message, "message", "m", "", "what this version is")
	cmd.Flags().StringVar(&stage, "stage", "", "pipeline stage (collect, clean, explore, features, split, train, evaluate, tune, deploy, monitor)")
	cmd.Flags().BoolVar(&ignoreInode, "ignore-inode", false, "detect changes by size and times only (filesystems that renumber inodes)")
	return cmd
}

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
