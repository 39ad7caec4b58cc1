package catalog

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/catalog/pgtest"
	"github.com/custodyhq/custody/internal/ledger"
)

// benchRecords makes n realistic ledger entries starting at entry number
// from: file modifications spread over 50 datasets, 20 users, and a tree of
// directories.
func benchRecords(from, n int) [][]byte {
	out := make([][]byte, n)
	for k := range n {
		i := from + k
		uid := uint32(1000 + i%20)
		e := ledger.Entry{
			Time:    time.Unix(1_770_000_000, 0).Add(time.Duration(i) * time.Second),
			Kind:    []string{"file.modify", "file.modify", "file.modify", "snapshot", "restore"}[i%5],
			Actor:   ledger.Actor{UID: &uid, User: "user" + strconv.Itoa(i%20), PID: 10000 + i%5000, Exe: "/usr/bin/rsync"},
			Dataset: "dataset" + strconv.Itoa(i%50),
			Path:    fmt.Sprintf("/srv/share/d%d/s%d/file-%d.dat", i%50, (i/50)%1000, i),
			Outcome: "ok",
			Detail:  map[string]string{"bytes": strconv.Itoa(i * 37 % 1000000), "hash": "blake3:9f2c0d1e"},
		}
		b, err := e.Leaf()
		if err != nil {
			panic(err)
		}
		out[k] = b
	}
	return out
}

func benchAppend(b *testing.B, db *DB) {
	ctx := context.Background()
	log := ledger.New(db)
	const batch = 1000
	batches := make([][][]byte, 16)
	for i := range batches {
		batches[i] = benchRecords(i*batch, batch)
	}
	b.ResetTimer()
	for i := range b.N {
		if _, err := log.Append(ctx, batches[i%len(batches)]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "entries/s")
	b.ReportMetric(0, "ns/op")
}

func BenchmarkAppendSQLite(b *testing.B) {
	db, err := Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	benchAppend(b, db)
}

func BenchmarkAppendPostgres(b *testing.B) {
	db, err := Open(context.Background(), pgtest.DSN(b))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	benchAppend(b, db)
}

// BenchmarkSearchPathSQLite measures a path-prefix search over a ledger of
// CUSTODY_BENCH_ROWS rows (default 200,000). The database is kept in
// CUSTODY_BENCH_DB if set, so that a large one is built once.
func BenchmarkSearchPathSQLite(b *testing.B) {
	rows := 200_000
	if s := os.Getenv("CUSTODY_BENCH_ROWS"); s != "" {
		rows, _ = strconv.Atoi(s)
	}
	path := os.Getenv("CUSTODY_BENCH_DB")
	if path == "" {
		path = filepath.Join(b.TempDir(), "search.db")
	}
	benchSearch(b, path, rows)
}

func BenchmarkSearchPathPostgres(b *testing.B) {
	rows := 200_000
	if s := os.Getenv("CUSTODY_BENCH_ROWS"); s != "" {
		rows, _ = strconv.Atoi(s)
	}
	benchSearch(b, pgtest.DSN(b), rows)
}

func benchSearch(b *testing.B, dsn string, rows int) {
	ctx := context.Background()
	db, err := Open(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	log := ledger.New(db)
	have, err := db.Size(ctx)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	for n := int(have); n < rows; n += 5000 {
		if _, err := log.Append(ctx, benchRecords(n, min(5000, rows-n))); err != nil {
			b.Fatal(err)
		}
	}
	if int(have) < rows {
		b.Logf("filled %d rows in %v", rows-int(have), time.Since(start))
	}
	if db.Driver() == Postgres {
		db.db.ExecContext(ctx, "VACUUM ANALYZE ledger")
	} else {
		db.db.ExecContext(ctx, "ANALYZE")
	}
	queries := []Query{
		{Path: "/srv/share/d7/s3", After: -1}, // a small subtree
		{Path: "/srv/share/d7", After: -1},    // 1/50 of the table, first 1000
		{Path: "/srv/share/d7", After: int64(rows) / 2, Limit: 100},
		{Path: "/srv/share/d7/s3/nothing", After: -1},
		{Path: "/srv/share/d7/s3/file-" + strconv.Itoa(3*50+7) + ".dat", After: -1}, // one file
	}
	for _, q := range queries {
		b.Run(fmt.Sprintf("%s_after%d_limit%d", q.Path, q.After, q.Limit), func(b *testing.B) {
			var hits int
			for range b.N {
				h, err := db.Search(ctx, q)
				if err != nil {
					b.Fatal(err)
				}
				hits = len(h)
			}
			b.ReportMetric(float64(hits), "hits")
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/search")
		})
	}
}

// BenchmarkVerifySQLite: ledger.Verify over a catalog of 100,000 records.
func BenchmarkVerifySQLite(b *testing.B) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(b.TempDir(), "verify.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	const n = 100_000
	log := ledger.New(db)
	for i := 0; i < n; i += 5000 {
		if _, err := log.Append(ctx, benchRecords(i, 5000)); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for range b.N {
		if err := ledger.Verify(ctx, db.Records(ctx, 0), db, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "records/s")
}
