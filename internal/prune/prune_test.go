package prune

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/backend"
	"github.com/custodyhq/custody/internal/backend/mem"
	"github.com/custodyhq/custody/internal/check"
	"github.com/custodyhq/custody/internal/snapshot"
	"github.com/custodyhq/custody/internal/testkit"
	"github.com/custodyhq/custody/internal/vault"
	"github.com/custodyhq/custody/internal/vaulttest"
)

func TestSelectKeepsByRuleUsingStoreTime(t *testing.T) {
	now := time.Date(2026, 1, 31, 0, 0, 0, 0, time.UTC)
	mk := func(daysAgo int, forged time.Time) *vault.Version {
		return &vault.Version{ID: vault.ID{byte(daysAgo)}, StoredAt: now.AddDate(0, 0, -daysAgo), Time: forged}
	}
	// Every version claims to be brand new; only the store's clock counts.
	vs := []*vault.Version{mk(40, now), mk(1, now), mk(10, now), mk(3, now)}
	cases := []struct {
		name string
		p    Policy
		keep []int // days ago of kept versions
	}{
		{"last 2", Policy{KeepLast: 2}, []int{1, 3}},
		{"within 5 days", Policy{KeepWithin: 5 * 24 * time.Hour}, []int{1, 3}},
		{"last 1 or within 15 days", Policy{KeepLast: 1, KeepWithin: 15 * 24 * time.Hour}, []int{1, 3, 10}},
		{"last 10", Policy{KeepLast: 10}, []int{1, 3, 10, 40}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var kept []int
			for _, d := range Select(vs, c.p, now) {
				if d.Keep {
					kept = append(kept, int(d.Version.ID[0]))
				}
			}
			if len(kept) != len(c.keep) {
				t.Fatalf("kept %v, want %v", kept, c.keep)
			}
			for i := range kept {
				if kept[i] != c.keep[i] {
					t.Fatalf("kept %v, want %v", kept, c.keep)
				}
			}
		})
	}
}

func TestForgetRefusesAnEmptyPolicy(t *testing.T) {
	v, _ := vaulttest.New(t)
	if _, err := Forget(context.Background(), v, "ds", Policy{}, false); !errors.Is(err, ErrEmptyPolicy) {
		t.Fatalf("got %v", err)
	}
}

// threeVersions snapshots three different states of one dataset; each
// state has its own 6 MiB file; packs hold data of several versions, so
// prune both deletes and repacks.
func threeVersions(t *testing.T) (*vault.Vault, *mem.Mem, string) {
	v, be := vaulttest.New(t)
	dir := t.TempDir()
	for i := uint64(1); i <= 3; i++ {
		testkit.WriteFiles(t, dir, map[string][]byte{"model.bin": testkit.RandomBytes(i, 6<<20), "keep.txt": []byte("same in all")})
		vaulttest.Snapshot(t, v, "ds", dir)
	}
	return v, be, dir
}

func packNames(be *mem.Mem) map[string]bool {
	out := map[string]bool{}
	be.List(context.Background(), backend.Packs, func(i backend.Info) error { out[i.Handle.Name] = true; return nil })
	return out
}

func packBytes(be *mem.Mem) (n int64) {
	be.List(context.Background(), backend.Packs, func(i backend.Info) error { n += i.Size; return nil })
	return n
}

func checkClean(t *testing.T, be *mem.Mem) {
	t.Helper()
	r, err := check.Run(context.Background(), vaulttest.Reopen(t, be), check.Options{ReadData: true})
	if err != nil || !r.OK() {
		t.Fatalf("check: %v %+v", err, r)
	}
}

func TestPruneWithMarginOnlyMarksThenDeletesWhenDue(t *testing.T) {
	ctx := context.Background()
	v, be, dir := threeVersions(t)
	if _, err := Forget(ctx, v, "ds", Policy{KeepLast: 1}, false); err != nil {
		t.Fatal(err)
	}
	before := packNames(be)
	// The store stamps what this prune writes two hours in the past, as if
	// the next prune ran two hours later.
	be.Now = func() time.Time { return time.Now().Add(-2 * time.Hour) }
	st, err := Run(ctx, vaulttest.Reopen(t, be), DefaultOptions)
	be.Now = time.Now
	if err != nil {
		t.Fatal(err)
	}
	after := packNames(be)
	for p := range before {
		if !after[p] {
			t.Fatalf("first prune deleted pack %s", p)
		}
	}
	if st.PacksMarked == 0 || st.PacksDeleted != 0 {
		t.Fatalf("first prune should only mark: %+v", st)
	}
	// A new snapshot of data that lives only in marked packs must store it
	// again rather than point at packs about to go.
	testkit.WriteFiles(t, dir, map[string][]byte{"model.bin": testkit.RandomBytes(1, 6<<20)})
	vaulttest.Snapshot(t, vaulttest.Reopen(t, be), "ds", dir)
	// Now the marks are older than the margin: the packs are due.
	st, err = Run(ctx, vaulttest.Reopen(t, be), DefaultOptions)
	if err != nil {
		t.Fatal(err)
	}
	if st.PacksDeleted == 0 {
		t.Fatalf("second prune deleted nothing: %+v", st)
	}
	checkClean(t, be)
}

func TestPruneWithoutMarginFreesSpaceAndKeepsWhatIsUsed(t *testing.T) {
	ctx := context.Background()
	v, be, dir := threeVersions(t)
	Forget(ctx, v, "ds", Policy{KeepLast: 1}, false)
	before := packBytes(be)
	st, err := Run(ctx, vaulttest.Reopen(t, be), Options{SafetyMargin: 0, MaxUnused: 0.2})
	if err != nil {
		t.Fatal(err)
	}
	if after := packBytes(be); after > before/2 || st.PacksDeleted == 0 {
		t.Fatalf("packs %d -> %d bytes: %+v", before, after, st)
	}
	checkClean(t, be)
	v2 := vaulttest.Reopen(t, be)
	latest, _ := v2.ResolveVersion(ctx, "latest", "ds")
	out := t.TempDir()
	if _, err := snapshot.Restore(ctx, v2, latest.Tree, "", out, snapshot.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	_ = dir
}

// Crash safety: prune interrupted at every delete it makes, then run
// again, leaves a vault that checks clean and that prune finishes.
func TestPruneInterruptedAtAnyDeleteRecovers(t *testing.T) {
	ctx := context.Background()
	for failAt := 1; failAt <= 10; failAt++ {
		v, be, _ := threeVersions(t)
		Forget(ctx, v, "ds", Policy{KeepLast: 1}, false)
		deletes := 0
		be.Fail = func(op mem.Op, h backend.Handle) error {
			if op == mem.OpDelete {
				deletes++
				if deletes == failAt {
					return errors.New("killed")
				}
			}
			return nil
		}
		_, err := Run(ctx, vaulttest.Reopen(t, be), Options{MaxUnused: 0.2})
		be.Fail = nil
		checkClean(t, be)
		if _, err := Run(ctx, vaulttest.Reopen(t, be), Options{MaxUnused: 0.2}); err != nil {
			t.Fatalf("fail at delete %d: rerun: %v", failAt, err)
		}
		checkClean(t, be)
		if err == nil {
			break // fewer deletes than failAt: every point was covered
		}
	}
}
