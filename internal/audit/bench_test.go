package audit_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/audit"
	"github.com/custodyhq/custody/internal/backend/local"
	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/catalog/pgtest"
	"github.com/custodyhq/custody/internal/ledger"
	"github.com/custodyhq/custody/internal/vault"
	"github.com/custodyhq/custody/internal/vaulttest"
)

// benchEntry is a watcher's typical event: a file modified under one of
// 50 datasets by one of 20 users. With scattered, every event lands in a
// different one of 50,000 directories (the worst case for the path index);
// otherwise events come in bursts of 100 in one directory, as jobs that
// write, copy or delete a directory's files make them.
func benchEntry(i int, scattered bool) ledger.Entry {
	uid := uint32(1000 + i%20)
	ds, dir := i%50, (i/50)%1000
	if !scattered {
		job := i / 100
		ds, dir = job%50, (job/50)%1000
	}
	return ledger.Entry{
		Time:    time.Unix(1_770_000_000, 0).Add(time.Duration(i) * time.Millisecond),
		Kind:    "file.modify",
		Actor:   ledger.Actor{UID: &uid, User: "user" + strconv.Itoa(i%20), PID: 10000 + i%5000, Exe: "/usr/bin/rsync"},
		Dataset: "dataset" + strconv.Itoa(ds),
		Path:    fmt.Sprintf("/srv/share/d%d/s%d/file-%d.dat", ds, dir, i),
		Outcome: "ok",
		Detail:  map[string]string{"bytes": strconv.Itoa(i * 37 % 1000000)},
	}
}

// diskVault makes a vault in a local directory, with cheap key derivation.
func diskVault(b *testing.B) *vault.Vault {
	be, err := local.Create(filepath.Join(b.TempDir(), "vault"))
	if err != nil {
		b.Fatal(err)
	}
	vaulttest.Init(b, be)
	return vaulttest.Reopen(b, be)
}

// benchStream measures sustained appends through a Stream, the way a
// watcher records events: two producers, checkpoints every second. It
// appends CUSTODY_BENCH_ENTRIES entries (default 200,000) per b.N into a
// catalog that grows with each.
func benchStream(b *testing.B, dsn string, scattered bool) {
	ctx := context.Background()
	n := benchEntries()
	db, err := catalog.Open(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	r, err := audit.New(diskVault(b), db)
	if err != nil {
		b.Fatal(err)
	}
	var checkpoints int64
	b.ResetTimer()
	for range b.N {
		checkpoints += fill(b, r, n, scattered).Checkpoints
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "entries/s")
	b.ReportMetric(float64(checkpoints)/b.Elapsed().Seconds(), "checkpoints/s")
	b.ReportMetric(0, "ns/op")
}

func BenchmarkStreamSQLite(b *testing.B) {
	benchStream(b, filepath.Join(b.TempDir(), "catalog.db"), false)
}

func BenchmarkStreamPostgres(b *testing.B) {
	benchStream(b, pgtest.DSN(b), false)
}

func BenchmarkStreamScatteredSQLite(b *testing.B) {
	benchStream(b, filepath.Join(b.TempDir(), "catalog.db"), true)
}

func BenchmarkStreamScatteredPostgres(b *testing.B) {
	benchStream(b, pgtest.DSN(b), true)
}

// BenchmarkVerifySQLite measures `audit verify`'s work (every record
// rehashed, every stored hash checked, every vault checkpoint proved) over
// CUSTODY_BENCH_ENTRIES entries (default 200,000).
func BenchmarkVerifySQLite(b *testing.B) {
	ctx := context.Background()
	n := benchEntries()
	db, err := catalog.Open(ctx, filepath.Join(b.TempDir(), "catalog.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	r, err := audit.New(diskVault(b), db)
	if err != nil {
		b.Fatal(err)
	}
	fill(b, r, n, false)
	b.ResetTimer()
	for range b.N {
		if got, err := r.Verify(ctx, nil); err != nil || got != int64(n) {
			b.Fatalf("Verify: %d %v", got, err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N)*1e6/float64(n), "s/1M-records")
	b.ReportMetric(0, "ns/op")
}

func benchEntries() int {
	if s := os.Getenv("CUSTODY_BENCH_ENTRIES"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return n
		}
	}
	return 200_000
}

// fill appends n entries through a stream with two producers and returns
// the stream's counts.
func fill(b *testing.B, r *audit.Recorder, n int, scattered bool) *audit.Stream {
	ctx := context.Background()
	s := r.Stream(audit.StreamOptions{})
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(sctx) }()
	var wg sync.WaitGroup
	const producers = 2
	for p := range producers {
		wg.Go(func() {
			for i := p; i < n; i += producers {
				if err := s.Add(ctx, benchEntry(i, scattered)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	stop()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	return s
}
