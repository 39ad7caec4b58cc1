package audit_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	_ "github.com/ncruces/go-sqlite3/driver"

	"github.com/custodyhq/custody/internal/catalog/pgtest"
	"github.com/custodyhq/custody/internal/ledger"
)

// The peer for the stream benchmarks: the same entries, encoded the same
// way, written by one batching writer into a plain table with the same
// search columns and indexes, but no Merkle hashes, no compare-and-append
// and no signed checkpoints. The ratio between the two is what tamper
// evidence costs.

const plainSchema = `CREATE TABLE plain_log (
	idx BIGINT PRIMARY KEY, record %[1]s NOT NULL, time BIGINT NOT NULL,
	kind TEXT NOT NULL, dataset TEXT NOT NULL, path TEXT NOT NULL, user_name TEXT NOT NULL);
CREATE INDEX plain_path ON plain_log (path, idx);
CREATE INDEX plain_dataset ON plain_log (dataset, idx);
CREATE INDEX plain_user ON plain_log (user_name, idx);
CREATE INDEX plain_kind ON plain_log (kind, idx);
CREATE INDEX plain_time ON plain_log (time);`

type plainRow struct {
	e   ledger.Entry
	rec []byte
}

// plainWriter inserts one batch of rows starting at index idx.
type plainWriter func(ctx context.Context, idx int64, rows []plainRow) error

func benchPlain(b *testing.B, write plainWriter, scattered bool) {
	ctx := context.Background()
	n := benchEntries()
	var idx int64
	b.ResetTimer()
	for range b.N {
		in := make(chan plainRow, 50_000)
		var wg sync.WaitGroup
		const producers = 2
		for p := range producers {
			wg.Go(func() {
				for i := p; i < n; i += producers {
					e := benchEntry(i, scattered)
					rec, err := e.Leaf()
					if err != nil {
						b.Error(err)
						return
					}
					in <- plainRow{e, rec}
				}
			})
		}
		go func() { wg.Wait(); close(in) }()
		batch := make([]plainRow, 0, 5000)
		for r := range in {
			batch = append(batch, r)
		more:
			for len(batch) < cap(batch) {
				select {
				case r, ok := <-in:
					if !ok {
						break more
					}
					batch = append(batch, r)
				default:
					break more
				}
			}
			if err := write(ctx, idx, batch); err != nil {
				b.Fatal(err)
			}
			idx += int64(len(batch))
			batch = batch[:0]
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "entries/s")
	b.ReportMetric(0, "ns/op")
}

func BenchmarkPlainTableSQLite(b *testing.B)          { benchPlainSQLite(b, false) }
func BenchmarkPlainTableScatteredSQLite(b *testing.B) { benchPlainSQLite(b, true) }
func BenchmarkPlainTablePostgres(b *testing.B)        { benchPlainPostgres(b, false) }
func BenchmarkPlainTableScatteredPostgres(b *testing.B) {
	benchPlainPostgres(b, true)
}

func benchPlainSQLite(b *testing.B, scattered bool) {
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(b.TempDir(), "plain.db")+
		"?_pragma=journal_mode(wal)&_pragma=synchronous(normal)&_pragma=page_size(8192)&_pragma=cache_size(-32768)&_txlock=immediate")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(strings.ReplaceAll(plainSchema, "%[1]s", "BLOB")); err != nil {
		b.Fatal(err)
	}
	benchPlain(b, func(ctx context.Context, idx int64, rows []plainRow) error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		const per = 200 // rows per INSERT, as the catalog does
		for lo := 0; lo < len(rows); lo += per {
			hi := min(lo+per, len(rows))
			q := "INSERT INTO plain_log VALUES " + strings.TrimSuffix(strings.Repeat("(?,?,?,?,?,?,?),", hi-lo), ",")
			args := make([]any, 0, 7*(hi-lo))
			for i := lo; i < hi; i++ {
				r := rows[i]
				args = append(args, idx+int64(i), r.rec, r.e.Time.UnixNano(), r.e.Kind, r.e.Dataset, r.e.Path, r.e.Actor.User)
			}
			if _, err := tx.ExecContext(ctx, q, args...); err != nil {
				return err
			}
		}
		return tx.Commit()
	}, scattered)
}

func benchPlainPostgres(b *testing.B, scattered bool) {
	db, err := sql.Open("pgx", pgtest.DSN(b))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(strings.ReplaceAll(plainSchema, "%[1]s", "BYTEA")); err != nil {
		b.Fatal(err)
	}
	benchPlain(b, func(ctx context.Context, idx int64, rows []plainRow) error {
		conn, err := db.Conn(ctx)
		if err != nil {
			return err
		}
		defer conn.Close()
		return conn.Raw(func(dc any) error {
			data := make([][]any, len(rows))
			for i, r := range rows {
				data[i] = []any{idx + int64(i), r.rec, r.e.Time.UnixNano(), r.e.Kind, r.e.Dataset, r.e.Path, r.e.Actor.User}
			}
			_, err := dc.(*stdlib.Conn).Conn().CopyFrom(ctx, pgx.Identifier{"plain_log"},
				[]string{"idx", "record", "time", "kind", "dataset", "path", "user_name"}, pgx.CopyFromRows(data))
			return err
		})
	}, scattered)
}
