package cli

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/custodyhq/custody/internal/ledger"

	"github.com/custodyhq/custody/internal/snapshot"
	"github.com/custodyhq/custody/internal/vault"
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
			parent, err := v.ResolveVersion(ctx, "latest", dataset)
			if err != nil && !errors.Is(err, vault.ErrVersionNotFound) {
				return err
			}
			opts := snapshot.ArchiveOptions{IgnoreInode: ignoreInode}
			if parent != nil {
				opts.Parent = parent.Tree
			}
			bar := newProgress(g.stderr, -1, "snapshot")
			opts.Progress = func(p snapshot.ArchiveProgress) { bar.set(p.Bytes, p.Files) }
			opts.Warn = func(path string, err error) { g.log.Warn("snapshot", "path", displayPath(path), "err", err) }
			res, err := snapshot.Archive(ctx, v, src, opts)
			bar.done()
			if err != nil {
				return fmt.Errorf("snapshot %s: %w", src, err)
			}
			if err := v.Flush(ctx); err != nil {
				return fmt.Errorf("snapshot %s: %w", src, err)
			}
			ver := &vault.Version{
				Dataset: dataset, Stage: stage, Tree: res.Tree, Time: time.Now().UTC(), Message: message, Source: src,
				Files: res.Files, Dirs: res.Dirs, Bytes: res.Bytes, NewBytes: res.NewBytes, Stored: res.StoredBytes,
				UID: uint32(os.Getuid()), Changed: res.ChangedWhileRead,
			}
			ver.Host, _ = os.Hostname()
			if u, err := user.Current(); err == nil {
				ver.User = u.Username
			}
			for _, s := range res.Skipped {
				ver.Skipped = append(ver.Skipped, s.Path)
			}
			if parent != nil {
				ver.Parent = &parent.ID
			}
			id, err := v.SaveVersion(ctx, ver)
			if err != nil {
				return fmt.Errorf("snapshot %s: %w", src, err)
			}
			entry.Version = id.String()
			ver.ID = id
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
