package audit

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/ledger"
)

type fakeVault struct {
	mu  sync.Mutex
	cps [][]byte
}

func (f *fakeVault) ID() string         { return strings.Repeat("ab", 32) }
func (f *fakeVault) LedgerSeed() []byte { return make([]byte, 32) }
func (f *fakeVault) PutCheckpoint(_ context.Context, b []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cps = append(f.cps, b)
	return nil
}
func (f *fakeVault) Checkpoints(context.Context) ([][]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.cps...), nil
}

// catalog keeps the log in memory and lets a test rewrite what it returns.
type catalog struct {
	*ledger.MemStore
	edit func(i int64, rec []byte) []byte
}

func (c *catalog) SaveCheckpoint(context.Context, int64, []byte) error { return nil }
func (c *catalog) Records(ctx context.Context, from int64) ledger.Records {
	inner := c.MemStore.Records(ctx, from)
	return func(yield func(int64, []byte) bool) error {
		return inner(func(i int64, rec []byte) bool {
			if c.edit != nil {
				rec = c.edit(i, rec)
			}
			return yield(i, rec)
		})
	}
}

func record(t *testing.T, r *Recorder, n int) {
	t.Helper()
	for i := range n {
		e := ledger.Entry{Time: time.Now(), Kind: "snapshot", Actor: Self(), Dataset: "raw", Path: "f" + string(rune('a'+i%26)), Outcome: "ok"}
		if _, err := r.Record(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
}

func TestVerifyAcceptsAnIntactLogAndCatchesEdits(t *testing.T) {
	ctx := context.Background()
	v, db := &fakeVault{}, &catalog{MemStore: &ledger.MemStore{}}
	r, err := New(v, db)
	if err != nil {
		t.Fatal(err)
	}
	record(t, r, 30)
	if n, err := r.Verify(ctx, nil); err != nil || n != 30 {
		t.Fatalf("intact: %d %v", n, err)
	}
	db.edit = func(i int64, rec []byte) []byte {
		if i == 12 {
			return []byte(strings.Replace(string(rec), `"ok"`, `"denied"`, 1))
		}
		return rec
	}
	if _, err := r.Verify(ctx, nil); !errors.Is(err, ledger.ErrTampered) || !strings.Contains(err.Error(), "record 12") {
		t.Fatalf("edited record: %v", err)
	}
}

func TestVerifyCatchesARewrittenCatalogByTheVaultsCheckpoints(t *testing.T) {
	ctx := context.Background()
	v := &fakeVault{}
	r, _ := New(v, &catalog{MemStore: &ledger.MemStore{}})
	record(t, r, 10)
	// The insider replaces the whole catalog with a consistent forgery.
	forged, _ := New(v, &catalog{MemStore: &ledger.MemStore{}})
	v.mu.Lock()
	held := v.cps
	v.cps = nil // and even deletes the vault's checkpoints...
	v.mu.Unlock()
	record(t, forged, 10)
	// ...but an auditor kept one.
	if _, err := forged.Verify(ctx, held[4:5]); !errors.Is(err, ledger.ErrTampered) {
		t.Fatalf("forged log accepted: %v", err)
	}
}

func TestVerifyRefusesAForgedCheckpoint(t *testing.T) {
	v := &fakeVault{}
	r, _ := New(v, &catalog{MemStore: &ledger.MemStore{}})
	record(t, r, 3)
	bad := []byte(strings.Replace(string(v.cps[2]), "\n3\n", "\n2\n", 1))
	if _, err := r.Verify(context.Background(), [][]byte{bad}); !errors.Is(err, ledger.ErrTampered) {
		t.Fatalf("forged checkpoint accepted: %v", err)
	}
}

func TestProveConsistencyRefusesAForkedLog(t *testing.T) {
	ctx := context.Background()
	v := &fakeVault{}
	r, _ := New(v, &catalog{MemStore: &ledger.MemStore{}})
	record(t, r, 5)
	old, err := r.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	record(t, r, 3)
	if _, _, err := r.ProveConsistency(ctx, old); err != nil {
		t.Fatalf("intact log: %v", err)
	}
	// A rewritten log, longer than the kept checkpoint, signed with the
	// same key: no proof exists.
	forged, _ := New(v, &catalog{MemStore: &ledger.MemStore{}})
	record(t, forged, 9)
	if _, _, err := forged.ProveConsistency(ctx, old); !errors.Is(err, ledger.ErrTampered) || !strings.Contains(err.Error(), "does not extend") {
		t.Fatalf("forked log: %v", err)
	}
	if _, _, err := r.ProveConsistency(ctx, []byte("garbage\n")); err == nil {
		t.Fatal("garbage checkpoint accepted")
	}
}
