package catalog

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Query selects ledger records for `custody audit log`. Empty fields
// match anything.
type Query struct {
	Dataset, Path, User, Kind string
	Since, Until              time.Time // [Since, Until)
	After                     int64     // only index > After; -1 none
	Limit                     int       // 0 = 1000
}

// Hit is one matching record.
type Hit struct {
	Index  int64
	Record []byte
}

// pathSortCap: a path search matching fewer rows than this sorts them.
const pathSortCap = 50_000

// Search returns the records matching q in ascending index order. Path
// matches the exact path or anything under it.
func (db *DB) Search(ctx context.Context, q Query) ([]Hit, error) {
	var hits []Hit
	err := db.SearchEach(ctx, q, func(index int64, record []byte) error {
		hits = append(hits, Hit{Index: index, Record: bytes.Clone(record)})
		return nil
	})
	return hits, err
}

// SearchEach is Search handing each record to fn as it is read, without
// a copy: record is valid only until fn returns. An error from fn stops
// the search and is returned.
func (db *DB) SearchEach(ctx context.Context, q Query, fn func(index int64, record []byte) error) error {
	query, args, err := db.searchQuery(ctx, q)
	if err != nil {
		return err
	}
	rs, err := db.query(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("catalog: search: %w", err)
	}
	defer rs.Close()
	for rs.Next() {
		var index int64
		var record sql.RawBytes
		if err := rs.Scan(&index, &record); err != nil {
			return fmt.Errorf("catalog: search: %w", err)
		}
		if err := fn(index, record); err != nil {
			return err
		}
	}
	if err := rs.Err(); err != nil {
		return fmt.Errorf("catalog: search: %w", err)
	}
	return nil
}

// searchQuery is the SQL and arguments that find q's records.
func (db *DB) searchQuery(ctx context.Context, q Query) (string, []any, error) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if q.Dataset != "" {
		where = append(where, "dataset = "+arg(q.Dataset))
	}
	if q.Path != "" {
		base := strings.TrimSuffix(q.Path, "/")
		// One index range [base, base+"0") ('0' follows '/'), then keep
		// base itself and what lies under base+"/".
		if base == "" { // "/": every absolute path
			where = append(where, fmt.Sprintf("path >= %s AND path < %s", arg("/"), arg("0")))
		} else {
			b, lo, hi := arg(base), arg(base+"/"), arg(base+"0")
			where = append(where, fmt.Sprintf("path >= %s AND path < %s AND (path = %s OR path >= %s)", b, hi, b, lo))
		}
	}
	if q.User != "" {
		where = append(where, "user_name = "+arg(q.User))
	}
	if q.Kind != "" {
		where = append(where, "kind = "+arg(q.Kind))
	}
	if !q.Since.IsZero() {
		where = append(where, "time >= "+arg(q.Since.UnixNano()))
	}
	if !q.Until.IsZero() {
		where = append(where, "time < "+arg(q.Until.UnixNano()))
	}
	if q.After >= 0 {
		where = append(where, "idx > "+arg(q.After))
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 1000
	}
	cond := ""
	if len(where) > 0 {
		cond = " WHERE " + strings.Join(where, " AND ")
	}
	const order = " ORDER BY idx"
	if q.Path != "" {
		// A path prefix range is not in index order. When it holds few
		// rows, read them all through the path index and sort them (idx+0
		// keeps the planner off the primary key); when it holds many,
		// walking the primary key finds the first matches sooner. Planners
		// (PostgreSQL's notably) guess this badly for a path that matches
		// nothing, so count first, cheaply and capped.
		var n int
		countArgs := args[:len(args):len(args)]
		err := db.db.QueryRowContext(ctx, db.q("SELECT COUNT(*) FROM (SELECT 1 FROM ledger"+cond+" LIMIT "+strconv.Itoa(pathSortCap)+") t"), countArgs...).Scan(&n)
		if err != nil {
			return "", nil, fmt.Errorf("catalog: search: %w", err)
		}
		if n < pathSortCap {
			// Sort the indexes alone (the (path, idx) index covers
			// them), then fetch only the records returned.
			return "SELECT idx, record FROM ledger WHERE idx IN (SELECT idx FROM ledger" + cond + " ORDER BY idx + 0 LIMIT " + arg(limit) + ") ORDER BY idx", args, nil
		}
	}
	return "SELECT idx, record FROM ledger" + cond + order + " LIMIT " + arg(limit), args, nil
}

// ErrNoCheckpoint: no checkpoint was saved yet. It wraps sql.ErrNoRows.
var ErrNoCheckpoint = fmt.Errorf("catalog: no checkpoint saved: %w", sql.ErrNoRows)

// SaveCheckpoint stores a signed checkpoint (a C2SP note) for tree size
// size. Saving the same size again keeps the first.
func (db *DB) SaveCheckpoint(ctx context.Context, size int64, signed []byte) error {
	_, err := db.db.ExecContext(ctx, db.q(`INSERT INTO checkpoints (size, signed) VALUES ($1, $2) ON CONFLICT (size) DO NOTHING`), size, signed)
	if err != nil {
		return fmt.Errorf("catalog: save checkpoint: %w", err)
	}
	return nil
}

// LatestCheckpoint returns the checkpoint of the largest tree saved, or
// ErrNoCheckpoint.
func (db *DB) LatestCheckpoint(ctx context.Context) (int64, []byte, error) {
	var size int64
	var signed []byte
	err := db.db.QueryRowContext(ctx, `SELECT size, signed FROM checkpoints ORDER BY size DESC LIMIT 1`).Scan(&size, &signed)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, ErrNoCheckpoint
	}
	if err != nil {
		return 0, nil, fmt.Errorf("catalog: latest checkpoint: %w", err)
	}
	return size, signed, nil
}
