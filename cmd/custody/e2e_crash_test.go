package main_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/testkit"
)

// killWhen starts custody and SIGKILLs it as soon as cond holds (polled
// every 2 ms), unless it exits first. It reports whether it killed it.
func (e *env) killWhen(cond func() bool, args ...string) bool {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := e.command(ctx, nil, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				e.t.Fatalf("custody %s failed before it was killed: %v\n%s", quoteArgs(args), err, out.String())
			}
			return false
		case <-tick.C:
			if cond() {
				cmd.Process.Kill()
				<-done
				return true
			}
		}
	}
}

// jitter is d ±40%, at least 1 ms.
func jitter(rng *rand.Rand, d time.Duration) time.Duration {
	return max(time.Millisecond, d*6/10+time.Duration(rng.Int64N(int64(d)*8/10+1)))
}

// objectCount counts the files below one folder of the vault.
func objectCount(t *testing.T, vault, kind string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(filepath.Join(vault, kind), func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return nil
	})
	return n
}

func TestKilledSnapshotLeavesCheckableVault(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("writes 150 MiB several times; skipped with -short")
	}
	e := newVault(t)
	rng := newRand(t)
	src := filepath.Join(t.TempDir(), "crash")
	// 120 MiB random and 30 MiB text.
	randomFiles := makeDataset(t, rng, src, 10, 12<<20, 30, 1<<20)

	// Each round rewrites a random file first, so that every killed
	// snapshot has new packs to write.
	type round struct {
		what string
		kill func() bool
	}
	at := func(d time.Duration) round {
		d = jitter(rng, d)
		return round{fmt.Sprintf("after %v", d), deadline(d)}
	}
	newObject := func(kind string) round {
		before := -1
		return round{"at the first new object in " + kind + "/", afterEvent(rng, func() bool {
			n := objectCount(t, e.vault, kind)
			if before < 0 {
				before = n
			}
			return n > before
		})}
	}
	// The 50 ms and 200 ms kills of the example land in the same place
	// (unlocking the vault), so one round draws from that range.
	rounds := []round{at(time.Second), newObject("data"), at(500 * time.Millisecond), newObject("index"),
		at(time.Duration(20+rng.IntN(230)) * time.Millisecond)}
	for i, r := range rounds {
		if i > 0 {
			k := rng.IntN(len(randomFiles))
			testkit.WriteFile(t, filepath.Join(src, randomFiles[k]), testkit.RandomBytes(rng.Uint64(), 12<<20))
		}
		// Evaluate the condition once before the start, to count objects.
		r.kill()
		killed := e.killWhen(r.kill, "snapshot", src)
		t.Logf("round %d: snapshot %s: killed %v; tmp/ holds %d files, data/ %d packs, index/ %d objects",
			i, r.what, killed, objectCount(t, e.vault, "tmp"), objectCount(t, e.vault, "data"), objectCount(t, e.vault, "index"))
		e.checkClean()
		e.snapshot(src)
		e.checkClean("--read-data")
	}

	// A killed restore resumes when run again into the same target.
	target := filepath.Join(t.TempDir(), "restored")
	d := time.Duration(200+rng.IntN(600)) * time.Millisecond
	killed := e.killWhen(deadline(d), "restore", "latest", "--dataset", "crash", "--target", target)
	t.Logf("restore killed after %v: %v", d, killed)
	args := []string{"restore", "latest", "--dataset", "crash", "--target", target}
	if !killed || restoreFinished(target) {
		// It finished first (or was killed after its last step, the
		// marker's removal, while recording itself): a complete target
		// is rightly refused without --overwrite.
		args = append(args, "--overwrite")
	}
	e.ok(args...)
	compareTrees(t, src, target)
}

// restoreFinished reports whether target holds a restore that got past
// its last step: files, and no resume marker left.
func restoreFinished(target string) bool {
	names, err := os.ReadDir(target)
	if err != nil || len(names) == 0 {
		return false
	}
	_, err = os.Stat(filepath.Join(target, ".custody-restore"))
	return errors.Is(err, fs.ErrNotExist)
}

// deadline returns a condition that holds once d has passed since its first call.
func deadline(d time.Duration) func() bool {
	var end time.Time
	return func() bool {
		if end.IsZero() {
			end = time.Now().Add(d)
		}
		return time.Now().After(end)
	}
}

// names lists the files below one folder of the vault.
func names(t *testing.T, vault, kind string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	filepath.WalkDir(filepath.Join(vault, kind), func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			out[d.Name()] = true
		}
		return nil
	})
	return out
}

// onceGone returns a condition that holds, after a random extra delay of up
// to 20 ms, once any of the files now in the vault folder kind is gone.
func onceGone(t *testing.T, rng *rand.Rand, vault, kind string) func() bool {
	before := names(t, vault, kind)
	return afterEvent(rng, func() bool {
		now := names(t, vault, kind)
		for n := range before {
			if !now[n] {
				return true
			}
		}
		return false
	})
}

// afterEvent holds a random 0-20 ms after event first holds.
func afterEvent(rng *rand.Rand, event func() bool) func() bool {
	var at time.Time
	extra := time.Duration(rng.IntN(20)) * time.Millisecond
	return func() bool {
		if at.IsZero() {
			if !event() {
				return false
			}
			at = time.Now().Add(extra)
		}
		return time.Now().After(at)
	}
}

// TestKilledPruneAndForgetLeaveCheckableVault kills prune right after it
// marks packs, after it replaces the index, and while it deletes packs, and
// forget while it deletes versions.
func TestKilledPruneAndForgetLeaveCheckableVault(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("many snapshots and prunes; skipped with -short")
	}
	e := newVault(t)
	rng := newRand(t)
	src := filepath.Join(t.TempDir(), "pruned")
	// base.bin stays, so the packs of forgotten versions stay partly used
	// and prune repacks them; each version adds its own file.
	testkit.WriteFile(t, filepath.Join(src, "base.bin"), testkit.RandomBytes(rng.Uint64(), 1<<20))
	gen := 0
	newVersions := func(n int) {
		for range n {
			gen++
			os.Remove(filepath.Join(src, fmt.Sprintf("gen-%d.bin", gen-1)))
			testkit.WriteFile(t, filepath.Join(src, fmt.Sprintf("gen-%d.bin", gen)), testkit.RandomBytes(rng.Uint64(), 3<<20))
			testkit.WriteFile(t, filepath.Join(src, "labels.csv"), textBytes(rng, 200<<10))
			e.snapshot(src)
		}
	}
	rounds := []struct {
		what string
		kill func() func() bool
	}{
		{"once it marked packs", func() func() bool {
			return afterEvent(rng, func() bool { return objectCount(t, e.vault, "pending") > 0 })
		}},
		{"once it replaced an index object", func() func() bool { return onceGone(t, rng, e.vault, "index") }},
		{"once it deleted a pack", func() func() bool { return onceGone(t, rng, e.vault, "data") }},
	}
	for i, r := range rounds {
		newVersions(3 - min(i, 1)) // 3 versions, then 2 more beside the kept one
		e.ok("forget", "--dataset", "pruned", "--keep-last", "1")
		killed := e.killWhen(r.kill(), "prune", "--safety-margin", "0")
		t.Logf("round %d: prune %s: killed %v; data/ holds %d packs, index/ %d, pending/ %d", i, r.what, killed,
			objectCount(t, e.vault, "data"), objectCount(t, e.vault, "index"), objectCount(t, e.vault, "pending"))
		e.checkClean()
		e.ok("prune", "--safety-margin", "0")
		e.checkClean("--read-data")
	}

	newVersions(2)
	killed := e.killWhen(onceGone(t, rng, e.vault, "versions"), "forget", "--dataset", "pruned", "--keep-last", "1")
	t.Logf("forget once it deleted a version: killed %v, %d versions left", killed, objectCount(t, e.vault, "versions"))
	e.checkClean()
	if n := len(e.log()); n < 1 || n > 3 {
		t.Errorf("after a killed forget --keep-last 1 over 3 versions: %d versions", n)
	}
	e.ok("forget", "--dataset", "pruned", "--keep-last", "1")
	compareTrees(t, src, e.restore("latest", "--dataset", "pruned"))
}
