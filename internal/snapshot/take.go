package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"time"

	"github.com/custodyhq/custody/internal/vault"
)

// Taken is a saved version with what its archive found.
type Taken struct {
	Version *vault.Version // ID set
	Parent  *vault.Version // nil for a dataset's first version
	Result  *ArchiveResult
	// Unchanged: with ArchiveOptions.SkipUnchanged, the tree was the
	// parent's, no version was saved, and Version is the parent.
	Unchanged bool
}

// Take archives dir as a new version of dataset on top of the dataset's
// latest version (whose unchanged files are not read again), and saves it
// with this process's host, user and uid. opts.Parent is set by Take.
func Take(ctx context.Context, v *vault.Vault, dataset, stage, message, dir string, opts ArchiveOptions) (*Taken, error) {
	parent, err := v.ResolveVersion(ctx, "latest", dataset)
	if err != nil && !errors.Is(err, vault.ErrVersionNotFound) {
		return nil, err
	}
	opts.Parent = vault.ID{}
	if parent != nil {
		opts.Parent = parent.Tree
	}
	res, err := Archive(ctx, v, dir, opts)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", dir, err)
	}
	if err := v.Flush(ctx); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", dir, err)
	}
	if opts.SkipUnchanged && parent != nil && res.Tree == parent.Tree && len(res.ChangedWhileRead) == 0 {
		return &Taken{Version: parent, Parent: parent, Result: res, Unchanged: true}, nil
	}
	ver := &vault.Version{
		Dataset: dataset, Stage: stage, Tree: res.Tree, Time: time.Now().UTC(), Message: message, Source: dir,
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
		return nil, fmt.Errorf("snapshot %s: %w", dir, err)
	}
	ver.ID = id
	return &Taken{Version: ver, Parent: parent, Result: res}, nil
}
