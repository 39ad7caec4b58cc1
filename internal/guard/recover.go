package guard

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/snapshot"
	"github.com/custodyhq/custody/internal/vault"
)

// RecoverResult says what a recovery did.
type RecoverResult struct {
	Restored    []string // paths put back from the recovery point
	Quarantined []string // damaged or planted files moved to Quarantine
	Quarantine  string   // where they went
	Missing     []string // touched paths the recovery point does not have and that are gone
}

// Restore puts back, from each dataset's recovery point, exactly the files
// the incident touched, and moves what is in their place (encrypted
// copies, ransom notes, renamed files) into quarantine, a directory
// beside the dataset (".custody-quarantine/incident-N/<dataset>/..."),
// so forensics keep the evidence. Files the incident did not touch are
// left alone. Each dataset's path is where its recovery point was taken
// from. It is safe to run again: files already restored are restored
// again, and nothing already quarantined is lost.
func Restore(ctx context.Context, v *vault.Vault, inc catalog.Incident, files []catalog.IncidentFile) (*RecoverResult, error) {
	res := &RecoverResult{}
	byDataset := map[string][]catalog.IncidentFile{}
	for _, f := range files {
		byDataset[f.Dataset] = append(byDataset[f.Dataset], f)
	}
	names := make([]string, 0, len(byDataset))
	for ds := range byDataset {
		names = append(names, ds)
	}
	sort.Strings(names)
	type plan struct {
		ver        *vault.Version
		root, qdir string
	}
	plans := map[string]plan{}
	for _, ds := range names {
		vid, ok := inc.Recovery[ds]
		if !ok || vid == "" {
			return res, fmt.Errorf("recover: dataset %s has no recovery point (no version was taken before the incident); restore by hand with `custody restore`", ds)
		}
		ver, err := v.ResolveVersion(ctx, vid, ds)
		if err != nil {
			return res, fmt.Errorf("recover: recovery point %s of %s: %w", vid, ds, err)
		}
		root := ver.Source
		if !filepath.IsAbs(root) {
			return res, fmt.Errorf("recover: the recovery point %s of %s does not say where it was taken from; restore by hand with `custody restore`", vid, ds)
		}
		qdir := filepath.Join(filepath.Dir(root), ".custody-quarantine", "incident-"+strconv.FormatInt(inc.ID, 10), ds)
		plans[ds] = plan{ver, root, qdir}
	}
	for _, ds := range names {
		p := plans[ds]
		res.Quarantine = filepath.Dir(p.qdir)
		if err := restoreDataset(ctx, v, p.ver, p.root, p.qdir, byDataset[ds], res); err != nil {
			return res, err
		}
	}
	return res, nil
}

func restoreDataset(ctx context.Context, v *vault.Vault, ver *vault.Version, root, qdir string, files []catalog.IncidentFile, res *RecoverResult) error {
	// Every path the incident named, both sides of renames.
	paths := map[string]bool{}
	for _, f := range files {
		for _, p := range []string{f.Path, f.OldPath} {
			if rel, ok := relUnder(root, p); ok {
				paths[rel] = true
			}
		}
	}
	rels := make([]string, 0, len(paths))
	for p := range paths {
		rels = append(rels, p)
	}
	sort.Strings(rels)
	staging := filepath.Join(filepath.Dir(root), ".custody-quarantine", ".staging-"+ver.ID.Short())
	defer os.RemoveAll(staging)
	for _, rel := range rels {
		if err := ctx.Err(); err != nil {
			return err
		}
		node, err := snapshot.Lookup(ctx, v, ver.Tree, filepath.ToSlash(rel))
		inVersion := err == nil && node != nil && node.Type != snapshot.TypeDir
		if err != nil && !errors.Is(err, snapshot.ErrPathNotFound) {
			return fmt.Errorf("recover %s: %w", rel, err)
		}
		dst := filepath.Join(root, rel)
		if err := quarantineLinkedParents(root, rel, qdir, res); err != nil {
			return err
		}
		if fi, err := os.Lstat(dst); err == nil && !fi.IsDir() {
			q := freeName(filepath.Join(qdir, rel))
			if err := os.MkdirAll(filepath.Dir(q), 0o700); err != nil {
				return fmt.Errorf("recover: quarantine: %w", err)
			}
			if err := os.Rename(dst, q); err != nil {
				return fmt.Errorf("recover: quarantine %s: %w", dst, err)
			}
			res.Quarantined = append(res.Quarantined, dst)
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("recover %s: %w", dst, err)
		}
		if !inVersion {
			if _, err := os.Lstat(dst); errors.Is(err, fs.ErrNotExist) && strings.Contains(filepath.Base(rel), ".") {
				res.Missing = append(res.Missing, dst)
			}
			continue
		}
		// Restore into staging, then move into place.
		os.RemoveAll(staging)
		if _, err := snapshot.Restore(ctx, v, ver.Tree, filepath.ToSlash(rel), staging, snapshot.RestoreOptions{}); err != nil {
			return fmt.Errorf("recover %s from %s: %w", rel, ver.ID.Short(), err)
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("recover %s: %w", dst, err)
		}
		if err := os.Rename(filepath.Join(staging, filepath.Base(rel)), dst); err != nil {
			return fmt.Errorf("recover %s: %w", dst, err)
		}
		res.Restored = append(res.Restored, dst)
	}
	// A planted file whose name the version has is both quarantined and
	// restored; one it lacks is only quarantined, so not missing.
	res.Missing = slicesWithout(res.Missing, res.Quarantined)
	return nil
}

// relUnder is p relative to root, when p is under it.
func relUnder(root, p string) (string, bool) {
	if p == "" {
		return "", false
	}
	rel, err := filepath.Rel(root, p)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", false
	}
	return rel, true
}

func slicesWithout(a, drop []string) []string {
	d := map[string]bool{}
	for _, x := range drop {
		d[x] = true
	}
	var out []string
	for _, x := range a {
		if !d[x] {
			out = append(out, x)
		}
	}
	return out
}

// freeName is p, or p.1, p.2, ..., the first that does not exist: a
// second recovery never replaces evidence already in quarantine.
func freeName(p string) string {
	q := p
	for i := 1; ; i++ {
		if _, err := os.Lstat(q); errors.Is(err, fs.ErrNotExist) {
			return q
		}
		q = p + "." + strconv.Itoa(i)
	}
}

// quarantineLinkedParents moves into quarantine the first parent of rel
// under root that is not a real directory (a symbolic link planted in
// its place), so that nothing outside root is moved or written through
// it.
func quarantineLinkedParents(root, rel, qdir string, res *RecoverResult) error {
	dir := filepath.Dir(rel)
	if dir == "." {
		return nil
	}
	parts := strings.Split(dir, string(filepath.Separator))
	for i := range parts {
		p := filepath.Join(parts[:i+1]...)
		fi, err := os.Lstat(filepath.Join(root, p))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("recover %s: %w", p, err)
		}
		if fi.IsDir() {
			continue
		}
		q := freeName(filepath.Join(qdir, p))
		if err := os.MkdirAll(filepath.Dir(q), 0o700); err != nil {
			return fmt.Errorf("recover: quarantine: %w", err)
		}
		if err := os.Rename(filepath.Join(root, p), q); err != nil {
			return fmt.Errorf("recover: quarantine %s: %w", p, err)
		}
		res.Quarantined = append(res.Quarantined, filepath.Join(root, p))
		return nil
	}
	return nil
}
