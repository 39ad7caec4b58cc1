package audit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/custodyhq/custody/internal/ledger"
	"github.com/custodyhq/custody/internal/testkit"
)

// countingCatalog keeps the log in memory and counts saved checkpoints;
// failAppend makes appends fail.
type countingCatalog struct {
	*ledger.MemStore
	mu         sync.Mutex
	sizes      []int64
	failAppend error
}

func (c *countingCatalog) SaveCheckpoint(_ context.Context, size int64, _ []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sizes = append(c.sizes, size)
	return nil
}

func (c *countingCatalog) Append(ctx context.Context, size int64, records [][]byte, hashes [][]tlog.Hash) error {
	c.mu.Lock()
	err := c.failAppend
	c.mu.Unlock()
	if err != nil {
		return err
	}
	return c.MemStore.Append(ctx, size, records, hashes)
}

func (c *countingCatalog) saved() []int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int64(nil), c.sizes...)
}

func entry(i int) ledger.Entry {
	return ledger.Entry{Time: time.Unix(1_770_000_000, int64(i)), Kind: "file.modify", Actor: Self(), Dataset: "raw", Path: fmt.Sprintf("/data/raw/f%d", i), Outcome: "ok"}
}

func TestStreamAppendsEveryEntryAndSignsTheEnd(t *testing.T) {
	v, db := &fakeVault{}, &countingCatalog{MemStore: &ledger.MemStore{}}
	r, err := New(v, db)
	if err != nil {
		t.Fatal(err)
	}
	s := r.Stream(StreamOptions{Checkpoint: time.Hour, VaultCheckpoint: time.Hour, MaxBatch: 7, Queue: 3})
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	const producers, each = 4, 250
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range each {
				if err := s.Add(context.Background(), entry(p*each+i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if s.Appended != producers*each {
		t.Fatalf("appended %d, want %d", s.Appended, producers*each)
	}
	// The last checkpoint covers everything and is in the vault.
	if got := db.saved(); len(got) != 1 || got[0] != producers*each {
		t.Fatalf("catalog checkpoints at sizes %v, want one at %d", got, producers*each)
	}
	cps, _ := v.Checkpoints(context.Background())
	if len(cps) != 1 {
		t.Fatalf("%d checkpoints in the vault, want 1", len(cps))
	}
	c, err := ledger.OpenCheckpoint(cps[0], r.VerifierKey())
	if err != nil || c.Tree.N != producers*each {
		t.Fatalf("vault checkpoint: %v %v", c, err)
	}
	if n, err := r.Verify(context.Background(), nil); err != nil || n != producers*each {
		t.Fatalf("Verify: %d %v", n, err)
	}
	if err := s.Add(context.Background(), entry(0)); !errors.Is(err, ErrStreamClosed) {
		t.Fatalf("Add after Run: %v", err)
	}
}

func TestStreamSignsWhileEntriesArriveAndStoresFewerInTheVault(t *testing.T) {
	v, db := &fakeVault{}, &countingCatalog{MemStore: &ledger.MemStore{}}
	r, _ := New(v, db)
	s := r.Stream(StreamOptions{Checkpoint: 10 * time.Millisecond, VaultCheckpoint: time.Hour})
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	// covered waits for a checkpoint covering the first n entries.
	covered := func(n int) {
		t.Helper()
		testkit.WaitFor(t, testkit.Long, fmt.Sprintf("a checkpoint covering %d entries", n), func() bool {
			sizes := db.saved()
			return len(sizes) > 0 && sizes[len(sizes)-1] >= int64(n)
		})
	}
	// Entries keep arriving: each group is signed while the next waits.
	const groups, each = 6, 5
	for i := range groups * each {
		if err := s.Add(ctx, entry(i)); err != nil {
			t.Fatal(err)
		}
		if i%each == each-1 {
			covered(i + 1)
		}
	}
	// Idle: every entry is signed, so no tick may sign another checkpoint.
	idle := len(db.saved())
	time.Sleep(60 * time.Millisecond) // six ticks of the cadence
	if got := len(db.saved()); got != idle {
		t.Fatalf("%d checkpoints signed while idle", got-idle)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	sizes := db.saved()
	if len(sizes) < groups {
		t.Fatalf("only %d checkpoints for %d groups of entries signed one after the other", len(sizes), groups)
	}
	for i := 1; i < len(sizes); i++ {
		if sizes[i] <= sizes[i-1] {
			t.Fatalf("checkpoint sizes not increasing: %v", sizes)
		}
	}
	if cps, _ := v.Checkpoints(context.Background()); len(cps) != 1 {
		t.Fatalf("%d checkpoints in the vault with an hour's vault cadence, want the closing one", len(cps))
	}
}

func TestStreamStopsOnAFailedAppend(t *testing.T) {
	v, db := &fakeVault{}, &countingCatalog{MemStore: &ledger.MemStore{}}
	db.failAppend = errors.New("disk full")
	r, _ := New(v, db)
	s := r.Stream(StreamOptions{})
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	if err := s.Add(context.Background(), entry(1)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil || !errors.Is(err, db.failAppend) {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(testkit.Long):
		t.Fatal("Run did not stop on a failed append")
	}
	if err := s.Add(context.Background(), entry(2)); !errors.Is(err, ErrStreamClosed) {
		t.Fatalf("Add after failure: %v", err)
	}
}
