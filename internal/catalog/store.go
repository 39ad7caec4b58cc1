package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/custodyhq/custody/internal/ledger"
)

var _ ledger.Store = (*DB)(nil)

// ErrConflict wraps ledger.ErrConflict: another appender extended the
// ledger first.
var ErrConflict = fmt.Errorf("catalog: %w", ledger.ErrConflict)

// ReadHashes implements tlog.HashReader: each stored hash is kept with the
// record whose append produced it (ledger.HashOwner).
func (db *DB) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	return db.readHashes(context.Background(), indexes)
}

func (db *DB) readHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error) {
	if len(indexes) == 0 {
		return nil, nil
	}
	owners := make([]int64, len(indexes))
	offsets := make([]int64, len(indexes))
	seen := map[int64]bool{}
	var want []int64
	for i, x := range indexes {
		if x < 0 {
			return nil, fmt.Errorf("catalog: stored hash %d not present", x)
		}
		owners[i], offsets[i] = ledger.HashOwner(x)
		if !seen[owners[i]] {
			seen[owners[i]] = true
			want = append(want, owners[i])
		}
	}
	rows := map[int64][]byte{}
	db.recent.Lock()
	if db.recent.rows != nil {
		kept := want[:0]
		for _, o := range want {
			if hs, ok := db.recent.rows[o]; ok {
				rows[o] = hs
			} else {
				kept = append(kept, o)
			}
		}
		want = kept
	}
	db.recent.Unlock()
	for len(want) > 0 {
		chunk := want[:min(len(want), 500)]
		want = want[len(chunk):]
		var b strings.Builder
		args := make([]any, len(chunk))
		b.WriteString("SELECT idx, hashes FROM ledger WHERE idx IN (")
		for i, o := range chunk {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString("$" + strconv.Itoa(i+1))
			args[i] = o
		}
		b.WriteByte(')')
		rs, err := db.db.QueryContext(ctx, db.q(b.String()), args...)
		if err != nil {
			return nil, fmt.Errorf("catalog: read hashes: %w", damaged(err))
		}
		for rs.Next() {
			var idx int64
			var hs []byte
			if err := rs.Scan(&idx, &hs); err != nil {
				rs.Close()
				return nil, fmt.Errorf("catalog: read hashes: %w", damaged(err))
			}
			rows[idx] = hs
		}
		err = rs.Err()
		rs.Close()
		if err != nil {
			return nil, fmt.Errorf("catalog: read hashes: %w", damaged(err))
		}
	}
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		hs, ok := rows[owners[i]]
		if !ok {
			return nil, fmt.Errorf("catalog: stored hash %d not present (record %d missing)", x, owners[i])
		}
		off := offsets[i] * tlog.HashSize
		if off+tlog.HashSize > int64(len(hs)) {
			return nil, fmt.Errorf("catalog: stored hash %d not present (record %d holds %d hashes)", x, owners[i], len(hs)/tlog.HashSize)
		}
		copy(out[i][:], hs[off:off+tlog.HashSize])
	}
	return out, nil
}

// Size implements ledger.Store: the size the last append recorded.
func (db *DB) Size(ctx context.Context) (int64, error) {
	var n int64
	if err := db.db.QueryRowContext(ctx, `SELECT size FROM ledger_head WHERE id = 1`).Scan(&n); err != nil {
		return 0, fmt.Errorf("catalog: ledger size: %w", damaged(err))
	}
	return n, nil
}

// insertBatch is how many rows one INSERT statement carries.
const insertBatch = 200

const insertCols = 8

// Append implements ledger.Store in one transaction: the head row moves
// from size to size+len(records) only if it still says size.
func (db *DB) Append(ctx context.Context, size int64, records [][]byte, hashes [][]tlog.Hash) error {
	return db.AppendEntries(ctx, size, records, nil, hashes)
}

// AppendEntries implements ledger.EntryStore: Append, taking the search
// columns from entries (nil: parse the records) instead of parsing them.
func (db *DB) AppendEntries(ctx context.Context, size int64, records [][]byte, entries []*ledger.Entry, hashes [][]tlog.Hash) error {
	if len(records) != len(hashes) || entries != nil && len(entries) != len(records) {
		return fmt.Errorf("catalog: append: %d records with %d hash sets", len(records), len(hashes))
	}
	if len(records) == 0 {
		return nil
	}
	// Parse the records for the search columns before taking the lock.
	rows := make([][]any, len(records))
	if entries != nil {
		for i := range records {
			rows[i] = entryArgs(size+int64(i), records[i], entries[i], hashes[i])
		}
	} else {
		parallel(len(records), func(i int) { rows[i] = rowArgs(size+int64(i), records[i], hashes[i]) })
	}
	if db.driver == Postgres {
		return db.appendPostgres(ctx, size, rows)
	}
	tx, err := db.db.BeginTx(ctx, nil) // SQLite: BEGIN IMMEDIATE
	if err != nil {
		return fmt.Errorf("catalog: append: %w", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, db.q(`UPDATE ledger_head SET size = $1 WHERE id = 1 AND size = $2`), size+int64(len(records)), size)
	if err != nil {
		return db.appendErr(err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("catalog: append: %w", err)
	} else if n != 1 {
		return fmt.Errorf("%w: appending at %d, but the ledger has moved on", ErrConflict, size)
	}
	// Rows go in batches of insertBatch, the rest in power-of-two
	// batches, so that a handful of statement shapes, prepared once for
	// the life of the DB, serve every append.
	args := make([]any, 0, insertBatch*insertCols)
	for start := 0; start < len(records); {
		n := min(insertBatch, len(records)-start)
		if n < insertBatch {
			n = 1 << (bits.Len(uint(n)) - 1)
		}
		args = args[:0]
		for i := start; i < start+n; i++ {
			args = append(args, rows[i]...)
		}
		st, err := db.prepared(ctx, db.insertSQL(n))
		if err != nil {
			return db.appendErr(err)
		}
		if _, err := tx.StmtContext(ctx, st).ExecContext(ctx, args...); err != nil {
			return db.appendErr(err)
		}
		start += n
	}
	if err := tx.Commit(); err != nil {
		return db.appendErr(err)
	}
	return nil
}

// appendPostgres is Append on PostgreSQL: the same compare-and-advance of
// the head row, then the rows through COPY.
func (db *DB) appendPostgres(ctx context.Context, size int64, rows [][]any) error {
	conn, err := db.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("catalog: append: %w", err)
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		pc := dc.(*stdlib.Conn).Conn()
		tx, err := pc.Begin(ctx)
		if err != nil {
			return fmt.Errorf("catalog: append: %w", err)
		}
		defer tx.Rollback(context.WithoutCancel(ctx))
		tag, err := tx.Exec(ctx, `UPDATE ledger_head SET size = $1 WHERE id = 1 AND size = $2`, size+int64(len(rows)), size)
		if err != nil {
			return db.appendErr(err)
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("%w: appending at %d, but the ledger has moved on", ErrConflict, size)
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"ledger"},
			[]string{"idx", "record", "hashes", "time", "kind", "dataset", "path", "user_name"},
			pgx.CopyFromRows(rows)); err != nil {
			return db.appendErr(err)
		}
		if err := tx.Commit(ctx); err != nil {
			return db.appendErr(err)
		}
		return nil
	})
}

// parallel runs f(0..n-1) on up to GOMAXPROCS goroutines.
func parallel(n int, f func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n/256)
	if workers <= 1 {
		for i := range n {
			f(i)
		}
		return
	}
	var wg sync.WaitGroup
	per := (n + workers - 1) / workers
	for lo := 0; lo < n; lo += per {
		hi := min(lo+per, n)
		wg.Go(func() {
			for i := lo; i < hi; i++ {
				f(i)
			}
		})
	}
	wg.Wait()
}

func (db *DB) appendErr(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code == "23505" || pe.Code == "40001" || pe.Code == "40P01") {
		return fmt.Errorf("%w: %v", ErrConflict, err)
	}
	return fmt.Errorf("catalog: append: %w", err)
}

func (db *DB) insertSQL(n int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO ledger (idx, record, hashes, time, kind, dataset, path, user_name) VALUES ")
	p := 1
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('(')
		for j := range insertCols {
			if j > 0 {
				b.WriteByte(',')
			}
			if db.driver == SQLite {
				b.WriteByte('?')
			} else {
				b.WriteString("$" + strconv.Itoa(p))
			}
			p++
		}
		b.WriteByte(')')
	}
	return b.String()
}

// searchColumns are the fields of a record the search columns hold.
type searchColumns struct {
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`
	Dataset string    `json:"dataset"`
	Path    string    `json:"path"`
	Actor   struct {
		User string `json:"user"`
	} `json:"actor"`
}

// rowArgs parses the record for the search columns; a record that does not
// parse is stored all the same, with empty columns. Verification, not
// this, judges records.
func rowArgs(idx int64, rec []byte, hs []tlog.Hash) []any {
	var c searchColumns
	if json.Unmarshal(rec, &c) != nil {
		c = searchColumns{}
	}
	return columnArgs(idx, rec, hs, c.Time, c.Kind, c.Dataset, c.Path, c.Actor.User)
}

// entryArgs takes the search columns from e, which rec encodes.
func entryArgs(idx int64, rec []byte, e *ledger.Entry, hs []tlog.Hash) []any {
	return columnArgs(idx, rec, hs, e.Time, e.Kind, e.Dataset, e.Path, e.Actor.User)
}

func columnArgs(idx int64, rec []byte, hs []tlog.Hash, tm time.Time, kind, dataset, path, user string) []any {
	flat := make([]byte, 0, len(hs)*tlog.HashSize)
	for _, h := range hs {
		flat = append(flat, h[:]...)
	}
	if rec == nil {
		rec = []byte{}
	}
	var t int64
	if !tm.IsZero() {
		t = tm.UnixNano()
	}
	return []any{idx, rec, flat, t, kind, dataset, path, user}
}

// recordsPage is how many records Records reads per query.
const recordsPage = 1000

// Records implements ledger.Store. It reads page by page, holding no
// transaction open while the caller works.
func (db *DB) Records(ctx context.Context, from int64) ledger.Records {
	return func(yield func(int64, []byte) bool) error {
		next := max(from, 0)
		for {
			rs, err := db.db.QueryContext(ctx, db.q(`SELECT idx, record, hashes FROM ledger WHERE idx >= $1 ORDER BY idx LIMIT $2`), next, recordsPage)
			if err != nil {
				return fmt.Errorf("catalog: records: %w", damaged(err))
			}
			type row struct {
				idx int64
				rec []byte
			}
			var page []row
			hashes := make(map[int64][]byte, recordsPage)
			for rs.Next() {
				var r row
				var hs []byte
				if err := rs.Scan(&r.idx, &r.rec, &hs); err != nil {
					rs.Close()
					return fmt.Errorf("catalog: records: %w", damaged(err))
				}
				page = append(page, r)
				hashes[r.idx] = hs
			}
			err = rs.Err()
			rs.Close()
			if err != nil {
				return fmt.Errorf("catalog: records: %w", damaged(err))
			}
			// Verify asks for each record's hash as it reads the record:
			// keep this page's hashes at hand.
			db.recent.Lock()
			db.recent.rows = hashes
			db.recent.Unlock()
			for _, r := range page {
				if !yield(r.idx, r.rec) {
					return nil
				}
			}
			if len(page) < recordsPage {
				return nil
			}
			next = page[len(page)-1].idx + 1
		}
	}
}
