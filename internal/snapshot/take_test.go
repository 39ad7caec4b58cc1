package snapshot_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/custodyhq/custody/internal/snapshot"
	"github.com/custodyhq/custody/internal/testkit"
	"github.com/custodyhq/custody/internal/vaulttest"
)

func TestTakeSkipUnchangedSavesNoVersionOfAnUnchangedTree(t *testing.T) {
	ctx := context.Background()
	v, _ := vaulttest.New(t)
	dir := t.TempDir()
	testkit.WriteFiles(t, dir, map[string][]byte{"a.txt": []byte("a")})
	first := vaulttest.Snapshot(t, v, "d", dir)
	skip := snapshot.ArchiveOptions{SkipUnchanged: true}
	same, err := snapshot.Take(ctx, v, "d", "", "scheduled", dir, skip)
	if err != nil {
		t.Fatal(err)
	}
	if !same.Unchanged || same.Version.ID != first.ID {
		t.Fatalf("unchanged tree: Unchanged=%v version %s, want the parent %s", same.Unchanged, same.Version.ID.Short(), first.ID.Short())
	}
	if ids, _ := v.VersionIDs(ctx); len(ids) != 1 {
		t.Fatalf("%d versions after a skipped snapshot, want 1", len(ids))
	}
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	next, err := snapshot.Take(ctx, v, "d", "", "scheduled", dir, skip)
	if err != nil {
		t.Fatal(err)
	}
	if next.Unchanged || next.Version.ID == first.ID || *next.Version.Parent != first.ID {
		t.Fatalf("changed tree: Unchanged=%v, version %s parent %v", next.Unchanged, next.Version.ID.Short(), next.Version.Parent)
	}
}
