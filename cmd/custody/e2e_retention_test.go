package main_test

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/custodyhq/custody/internal/testkit"
)

type forgetJSON struct {
	Dataset  string `json:"dataset"`
	DryRun   bool   `json:"dry_run"`
	Versions []struct {
		Version string `json:"version"`
		Keep    bool   `json:"keep"`
	} `json:"versions"`
}

type pruneJSON struct {
	Versions      int   `json:"versions"`
	PacksMarked   int   `json:"packs_marked"`
	PacksRepacked int   `json:"packs_repacked"`
	PacksDeleted  int   `json:"packs_deleted"`
	BytesDeleted  int64 `json:"bytes_deleted"`
}

func TestForgetThenPruneFreesSpace(t *testing.T) {
	t.Parallel()
	e := newVault(t)
	rng := newRand(t)
	src := filepath.Join(t.TempDir(), "rotating")
	var versions []string
	for i := range 3 {
		// Entirely new contents each time: nothing is shared between versions.
		testkit.WriteFile(t, filepath.Join(src, "weights.bin"), testkit.RandomBytes(rng.Uint64(), 3<<20))
		testkit.WriteFile(t, filepath.Join(src, "log.csv"), textBytes(rng, 300<<10))
		testkit.WriteFile(t, filepath.Join(src, "gen.txt"), []byte{byte('a' + i)})
		versions = append(versions, e.snapshot(src).Version)
	}
	want := scanTree(t, src)
	newest := versions[2]

	t.Run("DryRunChangesNothing", func(t *testing.T) {
		e := e.in(t)
		before := vaultListing(t, e.vault)
		var f forgetJSON
		e.okJSON(&f, "forget", "--dataset", "rotating", "--keep-last", "1", "--dry-run")
		assertUnchanged(t, e.vault, before)
		if !f.DryRun || len(f.Versions) != 3 {
			t.Fatalf("forget --dry-run: %+v, want dry_run and 3 versions", f)
		}
		for _, v := range f.Versions {
			if v.Keep != (v.Version == newest) {
				t.Errorf("forget --keep-last 1 --dry-run: version %s keep=%v, want keep only %s", v.Version[:8], v.Keep, newest[:8])
			}
		}
	})

	t.Run("ForgetKeepsNewest", func(t *testing.T) {
		e := e.in(t)
		var f forgetJSON
		e.okJSON(&f, "forget", "--dataset", "rotating", "--keep-last", "1")
		l := e.log()
		if len(l) != 1 || l[0].Version != newest {
			t.Fatalf("after forget --keep-last 1, log lists %d versions, want only %s", len(l), newest[:8])
		}
		if got := objects(t, e.vault, "versions"); !slices.Equal(got, []string{newest}) {
			t.Errorf("versions/ holds %q, want only %s", got, newest)
		}
	})

	t.Run("PruneWithMarginOnlyMarks", func(t *testing.T) {
		e := e.in(t)
		packsBefore := packs(t, e.vault)
		sizeBefore := dirSize(t, filepath.Join(e.vault, "data"))
		var p pruneJSON
		e.okJSON(&p, "prune")
		if p.PacksMarked == 0 {
			t.Errorf("prune found no garbage after forgetting 2 of 3 versions: %+v", p)
		}
		if p.PacksDeleted != 0 {
			t.Errorf("prune with the default safety margin deleted %d packs", p.PacksDeleted)
		}
		packsAfter := packs(t, e.vault)
		for _, pk := range packsBefore {
			if !slices.Contains(packsAfter, pk) {
				t.Errorf("prune with the default margin removed pack %s", filepath.Base(pk))
			}
		}
		if size := dirSize(t, filepath.Join(e.vault, "data")); p.PacksRepacked == 0 && size != sizeBefore {
			t.Errorf("prune with the default margin changed data/ from %d to %d bytes", sizeBefore, size)
		}
		if n := len(objects(t, e.vault, "pending")); n == 0 {
			t.Errorf("prune marked packs but wrote no pending object")
		}
	})

	t.Run("PruneWithoutMarginDeletes", func(t *testing.T) {
		e := e.in(t)
		sizeBefore := dirSize(t, filepath.Join(e.vault, "data"))
		var p pruneJSON
		e.okJSON(&p, "prune", "--safety-margin", "0")
		size := dirSize(t, filepath.Join(e.vault, "data"))
		if size >= sizeBefore || p.PacksDeleted == 0 {
			t.Errorf("prune --safety-margin 0: data/ went from %d to %d bytes, %d packs deleted; want less", sizeBefore, size, p.PacksDeleted)
		}
		if size > 5<<20 {
			t.Errorf("data/ holds %d bytes after pruning to one version of ~3.3 MiB", size)
		}
		if n := len(objects(t, e.vault, "pending")); n != 0 {
			t.Errorf("pending/ holds %d objects after a complete prune", n)
		}
		e.checkClean("--read-data")
		compareEntries(t, want, scanTree(t, e.restore(newest)))
	})
}

func TestKeyAddListRemove(t *testing.T) {
	t.Parallel()
	e := newVault(t)
	first := currentKey(t, e, nil)
	second := []string{"CUSTODY_PASSWORD=the second one"}

	var added struct {
		Key string `json:"key"`
	}
	r := e.runEnvOK([]string{"CUSTODY_NEW_PASSWORD=the second one"}, "--json", "key", "add")
	if err := decodeJSON(r.stdout, &added); err != nil || len(added.Key) != 64 {
		t.Fatalf("key add --json: %v\n%s", err, r)
	}
	keys := keyList(t, e, second)
	if len(keys) != 2 {
		t.Fatalf("key list shows %d keys, want 2", len(keys))
	}
	for _, k := range keys {
		if k.Current != (k.Name == added.Key) {
			t.Errorf("key list with the new passphrase marks %s current=%v; want only the added %s current", k.Name[:12], k.Current, added.Key[:12])
		}
	}
	e.failsEnv([]string{"CUSTODY_NEW_PASSWORD="}, 2, []string{"CUSTODY_NEW_PASSWORD"}, "key", "add")

	unchangedVault(t, e.vault, func() {
		e.fails(1, []string{"refusing"}, "key", "remove", first[:12])
	})

	e.ok("key", "remove", added.Key[:12])
	e.failsEnv(second, 1, []string{"wrong passphrase"}, "log")
	if got := strings.Join(objects(t, e.vault, "keys"), " "); got != first {
		t.Errorf("keys/ holds %s, want only %s", got, first)
	}
}
