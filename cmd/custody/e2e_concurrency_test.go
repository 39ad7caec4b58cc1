package main_test

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/custodyhq/custody/internal/testkit"
)

// snapshotAll snapshots each directory in its own process, all at once, and
// returns the results in order.
func (e *env) snapshotAll(dirs []string, flags ...string) []result {
	e.t.Helper()
	results := make([]result, len(dirs))
	var wg sync.WaitGroup
	for i, dir := range dirs {
		wg.Go(func() {
			results[i] = e.run(append(append([]string{"--json", "snapshot"}, flags...), dir)...)
		})
	}
	wg.Wait()
	return results
}

func TestConcurrentSnapshotsOfDifferentDatasets(t *testing.T) {
	t.Parallel()
	e := newVault(t)
	rng := newRand(t)
	base := t.TempDir()
	var dirs []string
	for i := range 3 {
		dir := filepath.Join(base, fmt.Sprintf("set-%d", i))
		makeDataset(t, rng, dir, 2, 5<<20, 3, 200<<10)
		// The same file in every dataset: their snapshots race to store it.
		testkit.WriteFile(t, filepath.Join(dir, "common.bin"), testkit.RandomBytes(42, 3<<20))
		dirs = append(dirs, dir)
	}
	var versions []string
	for i, r := range e.snapshotAll(dirs) {
		if r.code != 0 {
			t.Errorf("concurrent snapshot %d: want exit 0, got\n%s", i, r)
			continue
		}
		versions = append(versions, decodeSnapshot(t, r).Version)
	}
	if t.Failed() {
		t.FailNow()
	}
	e.checkClean("--read-data")
	if n := len(e.log()); n != 3 {
		t.Errorf("log lists %d versions, want 3", n)
	}
	for i, v := range versions {
		compareTrees(t, dirs[i], e.restore(v))
	}
}

func TestConcurrentSnapshotsOfSameDataset(t *testing.T) {
	t.Parallel()
	e := newVault(t)
	rng := newRand(t)
	dir := filepath.Join(t.TempDir(), "shared")
	makeDataset(t, rng, dir, 2, 4<<20, 2, 100<<10)
	rs := e.snapshotAll([]string{dir, dir})
	var versions []string
	for i, r := range rs {
		if r.code != 0 {
			t.Errorf("concurrent snapshot %d of one dataset: want exit 0, got\n%s", i, r)
			continue
		}
		versions = append(versions, decodeSnapshot(t, r).Version)
	}
	if t.Failed() {
		t.FailNow()
	}
	e.checkClean("--read-data")
	l := e.log("--dataset", "shared")
	if len(l) != 2 && !(len(l) == 1 && versions[0] == versions[1]) {
		t.Errorf("log lists %d versions of the dataset, want 2 (or 1 if both snapshots stored the same object)", len(l))
	}
	for _, v := range versions {
		compareTrees(t, dir, e.restore(v))
	}
}
