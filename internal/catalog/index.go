package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/custodyhq/custody/internal/vault"
)

// Dataset is one protected dataset as the catalog knows it.
type Dataset struct {
	Name       string
	Created    time.Time // time of the earliest version indexed
	Versions   int
	Latest     string // newest version id, "" if none
	LatestTime time.Time
}

// Version is one version's catalog row (the vault's signed object is the
// truth; this is its index).
type Version struct {
	ID, Dataset, Parent, Stage, Message, User string
	UID                                       uint32
	Host                                      string
	Time                                      time.Time
	Files, Bytes, Stored                      uint64
}

// VersionOf is v's catalog row.
func VersionOf(v *vault.Version) Version {
	c := Version{
		ID: v.ID.String(), Dataset: v.Dataset, Stage: v.Stage, Message: v.Message, User: v.User, UID: v.UID, Host: v.Host,
		Time: v.Time, Files: v.Files, Bytes: v.Bytes, Stored: v.Stored,
	}
	if v.Parent != nil {
		c.Parent = v.Parent.String()
	}
	return c
}

// Ref is a named pointer (branch or tag) to a version. Gen counts its
// moves; refs move by compare-and-swap on Gen so hosts sharing one
// PostgreSQL never lose an update.
type Ref struct {
	Dataset, Name, Target string
	Gen                   int64
	Updated               time.Time
}

// ErrNoRef: the ref does not exist.
var ErrNoRef = errors.New("catalog: no such ref")

// ErrRefMoved: the ref is not at the generation the caller read; read it
// again and retry.
var ErrRefMoved = errors.New("catalog: ref moved")

// Principal is who acts: an OS user or an API identity.
type Principal struct {
	Kind      string // "os" or "api"
	Name      string
	UID       *uint32
	FirstSeen time.Time
	LastSeen  time.Time
	Actions   int64
}

// maxNameLen bounds dataset, ref and principal names, in bytes.
const maxNameLen = 255

// checkName refuses a name that listings could not show plainly: empty,
// too long, not UTF-8, or holding control characters.
func checkName(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("empty %s", what)
	case len(s) > maxNameLen:
		return fmt.Errorf("%s %.32q… is %d bytes; the limit is %d", what, s, len(s), maxNameLen)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s %q is not valid UTF-8", what, s)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("%s %q contains control character %U", what, s, r)
		}
	}
	return nil
}

// checkText refuses what PostgreSQL cannot store in TEXT, so both drivers
// accept the same values.
func checkText(what, s string) error {
	if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
		return fmt.Errorf("%s %q is not valid UTF-8 without NUL bytes", what, s)
	}
	return nil
}

// unixNanos is t as stored: nanoseconds since the Unix epoch, which hold
// the years 1678 to 2262.
func unixNanos(what string, t time.Time) (int64, error) {
	if t.IsZero() {
		return 0, fmt.Errorf("%s is not set", what)
	}
	n := t.UnixNano()
	if !time.Unix(0, n).Equal(t) {
		return 0, fmt.Errorf("%s %v is outside the years 1678 to 2262", what, t)
	}
	return n, nil
}

// fromNanos reverses unixNanos; 0 is no time.
func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// checkVersion validates v and returns it with Time as it reads back.
func checkVersion(v Version) (Version, error) {
	if err := checkName("version id", v.ID); err != nil {
		return v, err
	}
	if err := checkName("dataset name", v.Dataset); err != nil {
		return v, fmt.Errorf("version %s: %w", v.ID, err)
	}
	for _, f := range []struct{ what, s string }{
		{"parent", v.Parent}, {"stage", v.Stage}, {"message", v.Message}, {"user", v.User}, {"host", v.Host},
	} {
		if err := checkText(f.what, f.s); err != nil {
			return v, fmt.Errorf("version %s: %w", v.ID, err)
		}
	}
	n, err := unixNanos("time", v.Time)
	if err != nil {
		return v, fmt.Errorf("version %s: %w", v.ID, err)
	}
	v.Time = fromNanos(n)
	return v, nil
}

// upsertDataset records dataset, moving created back if a version older
// than the ones seen so far arrives.
func (db *DB) upsertDataset(ctx context.Context, tx *sql.Tx, name string, created int64) error {
	_, err := tx.ExecContext(ctx, db.q(`INSERT INTO datasets (name, created) VALUES ($1, $2)
		ON CONFLICT (name) DO UPDATE SET created = excluded.created WHERE excluded.created < datasets.created`), name, created)
	return err
}

// upsertVersionSQL writes a version row whole; counters go in as int64
// bit patterns.
const upsertVersionSQL = `INSERT INTO versions (id, dataset, parent, stage, message, user_name, uid, host, time, files, bytes, stored)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
	ON CONFLICT (id) DO UPDATE SET dataset = excluded.dataset, parent = excluded.parent, stage = excluded.stage,
		message = excluded.message, user_name = excluded.user_name, uid = excluded.uid, host = excluded.host,
		time = excluded.time, files = excluded.files, bytes = excluded.bytes, stored = excluded.stored`

func versionArgs(v Version) []any {
	return []any{v.ID, v.Dataset, v.Parent, v.Stage, v.Message, v.User, int64(v.UID), v.Host,
		v.Time.UnixNano(), int64(v.Files), int64(v.Bytes), int64(v.Stored)}
}

// PutVersion indexes v, creating its dataset's row when missing. Putting
// the same version again is fine: the row is rewritten.
func (db *DB) PutVersion(ctx context.Context, v Version) error {
	v, err := checkVersion(v)
	if err != nil {
		return fmt.Errorf("catalog: put version: %w", err)
	}
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("catalog: put version %s: %w", v.ID, err)
	}
	defer tx.Rollback()
	if err := db.upsertDataset(ctx, tx, v.Dataset, v.Time.UnixNano()); err != nil {
		return fmt.Errorf("catalog: put version %s: dataset %s: %w", v.ID, v.Dataset, err)
	}
	if _, err := tx.ExecContext(ctx, db.q(upsertVersionSQL), versionArgs(v)...); err != nil {
		return fmt.Errorf("catalog: put version %s: %w", v.ID, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("catalog: put version %s: commit: %w", v.ID, err)
	}
	return nil
}

// DeleteVersion removes a version's row, if there is one. Its dataset's
// row stays.
func (db *DB) DeleteVersion(ctx context.Context, id string) error {
	if _, err := db.db.ExecContext(ctx, db.q(`DELETE FROM versions WHERE id = $1`), id); err != nil {
		return fmt.Errorf("catalog: delete version %s: %w", id, err)
	}
	return nil
}

const versionCols = `id, dataset, parent, stage, message, user_name, uid, host, time, files, bytes, stored`

// Versions lists a dataset's versions, or every version when dataset is
// "", newest first (ties by id).
func (db *DB) Versions(ctx context.Context, dataset string) ([]Version, error) {
	query, args := `SELECT `+versionCols+` FROM versions`, []any{}
	if dataset != "" {
		query, args = query+` WHERE dataset = $1`, append(args, dataset)
	}
	out, err := db.queryVersions(ctx, cachedQuerier{db}, query+` ORDER BY time DESC, id`, args...)
	if err != nil {
		return nil, fmt.Errorf("catalog: versions: %w", err)
	}
	return out, nil
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// cachedQuerier runs queries through the DB's prepared statements.
type cachedQuerier struct{ db *DB }

func (c cachedQuerier) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return c.db.query(ctx, query, args...)
}

func (db *DB) queryVersions(ctx context.Context, qr querier, query string, args ...any) ([]Version, error) {
	if _, ok := qr.(cachedQuerier); !ok {
		query = db.q(query)
	}
	rs, err := qr.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []Version
	for rs.Next() {
		var v Version
		var uid, t, files, bytes, stored int64
		if err := rs.Scan(&v.ID, &v.Dataset, &v.Parent, &v.Stage, &v.Message, &v.User, &uid, &v.Host, &t, &files, &bytes, &stored); err != nil {
			return nil, err
		}
		v.UID, v.Time = uint32(uid), fromNanos(t)
		v.Files, v.Bytes, v.Stored = uint64(files), uint64(bytes), uint64(stored)
		out = append(out, v)
	}
	return out, rs.Err()
}

// Datasets lists the datasets by name, each with its version count and
// newest version.
func (db *DB) Datasets(ctx context.Context) ([]Dataset, error) {
	rs, err := db.db.QueryContext(ctx, `SELECT d.name, d.created,
		(SELECT COUNT(*) FROM versions v WHERE v.dataset = d.name),
		COALESCE((SELECT v.id FROM versions v WHERE v.dataset = d.name ORDER BY v.time DESC, v.id LIMIT 1), ''),
		COALESCE((SELECT MAX(v.time) FROM versions v WHERE v.dataset = d.name), 0)
		FROM datasets d ORDER BY d.name`)
	if err != nil {
		return nil, fmt.Errorf("catalog: datasets: %w", err)
	}
	defer rs.Close()
	var out []Dataset
	for rs.Next() {
		var d Dataset
		var created, latest int64
		if err := rs.Scan(&d.Name, &created, &d.Versions, &d.Latest, &latest); err != nil {
			return nil, fmt.Errorf("catalog: datasets: %w", err)
		}
		d.Created, d.LatestTime = fromNanos(created), fromNanos(latest)
		out = append(out, d)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("catalog: datasets: %w", err)
	}
	return out, nil
}

// SyncVersions makes the versions table equal to all, in one transaction:
// the index rebuilt from the vault. It writes only the rows that differ
// and reports how many versions it added and removed. Dataset rows stay.
func (db *DB) SyncVersions(ctx context.Context, all []Version) (added, removed int, err error) {
	want := make(map[string]Version, len(all))
	created := map[string]int64{}
	for _, v := range all {
		v, err := checkVersion(v)
		if err != nil {
			return 0, 0, fmt.Errorf("catalog: sync versions: %w", err)
		}
		want[v.ID] = v
		if c, ok := created[v.Dataset]; !ok || v.Time.UnixNano() < c {
			created[v.Dataset] = v.Time.UnixNano()
		}
	}
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("catalog: sync versions: %w", err)
	}
	defer tx.Rollback()
	rows, err := db.queryVersions(ctx, tx, `SELECT `+versionCols+` FROM versions`)
	if err != nil {
		return 0, 0, fmt.Errorf("catalog: sync versions: read: %w", err)
	}
	have := make(map[string]Version, len(rows))
	for _, v := range rows {
		have[v.ID] = v
	}
	// Sorted, so concurrent syncs take row locks in the same order.
	for _, name := range slices.Sorted(maps.Keys(created)) {
		if err := db.upsertDataset(ctx, tx, name, created[name]); err != nil {
			return 0, 0, fmt.Errorf("catalog: sync versions: dataset %s: %w", name, err)
		}
	}
	upsert, err := tx.PrepareContext(ctx, db.q(upsertVersionSQL))
	if err != nil {
		return 0, 0, fmt.Errorf("catalog: sync versions: %w", err)
	}
	defer upsert.Close()
	for _, id := range slices.Sorted(maps.Keys(want)) {
		old, ok := have[id]
		if ok && old == want[id] {
			continue
		}
		if _, err := upsert.ExecContext(ctx, versionArgs(want[id])...); err != nil {
			return 0, 0, fmt.Errorf("catalog: sync versions: put %s: %w", id, err)
		}
		if !ok {
			added++
		}
	}
	del, err := tx.PrepareContext(ctx, db.q(`DELETE FROM versions WHERE id = $1`))
	if err != nil {
		return 0, 0, fmt.Errorf("catalog: sync versions: %w", err)
	}
	defer del.Close()
	for _, id := range slices.Sorted(maps.Keys(have)) {
		if _, ok := want[id]; ok {
			continue
		}
		if _, err := del.ExecContext(ctx, id); err != nil {
			return 0, 0, fmt.Errorf("catalog: sync versions: delete %s: %w", id, err)
		}
		removed++
	}
	if err := tx.Commit(); err != nil {
		return 0, 0, fmt.Errorf("catalog: sync versions: commit: %w", err)
	}
	return added, removed, nil
}

func checkRef(dataset, name string) error {
	if err := checkName("dataset name", dataset); err != nil {
		return err
	}
	return checkName("ref name", name)
}

// Ref reads one ref, or returns ErrNoRef.
func (db *DB) Ref(ctx context.Context, dataset, name string) (Ref, error) {
	if err := checkRef(dataset, name); err != nil {
		return Ref{}, fmt.Errorf("catalog: ref: %w", err)
	}
	r := Ref{Dataset: dataset, Name: name}
	var updated int64
	err := db.db.QueryRowContext(ctx, db.q(`SELECT target, gen, updated FROM refs WHERE dataset = $1 AND name = $2`),
		dataset, name).Scan(&r.Target, &r.Gen, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return Ref{}, fmt.Errorf("%w: %q in dataset %q", ErrNoRef, name, dataset)
	}
	if err != nil {
		return Ref{}, fmt.Errorf("catalog: ref %q in dataset %q: %w", name, dataset, err)
	}
	r.Updated = fromNanos(updated)
	return r, nil
}

// Refs lists a dataset's refs by name, or every ref by dataset and name
// when dataset is "".
func (db *DB) Refs(ctx context.Context, dataset string) ([]Ref, error) {
	query, args := `SELECT dataset, name, target, gen, updated FROM refs`, []any{}
	if dataset != "" {
		query, args = query+` WHERE dataset = $1`, append(args, dataset)
	}
	rs, err := db.db.QueryContext(ctx, db.q(query+` ORDER BY dataset, name`), args...)
	if err != nil {
		return nil, fmt.Errorf("catalog: refs: %w", err)
	}
	defer rs.Close()
	var out []Ref
	for rs.Next() {
		var r Ref
		var updated int64
		if err := rs.Scan(&r.Dataset, &r.Name, &r.Target, &r.Gen, &updated); err != nil {
			return nil, fmt.Errorf("catalog: refs: %w", err)
		}
		r.Updated = fromNanos(updated)
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("catalog: refs: %w", err)
	}
	return out, nil
}

// SetRef points a ref at target if it is still at generation gen, the one
// the caller read (0: the ref must not exist yet), and returns it at
// generation gen+1. Otherwise it returns ErrRefMoved and changes nothing.
func (db *DB) SetRef(ctx context.Context, dataset, name, target string, gen int64) (Ref, error) {
	if err := checkRef(dataset, name); err != nil {
		return Ref{}, fmt.Errorf("catalog: set ref: %w", err)
	}
	if err := checkName("ref target", target); err != nil {
		return Ref{}, fmt.Errorf("catalog: set ref %q in dataset %q: %w", name, dataset, err)
	}
	if gen < 0 {
		return Ref{}, fmt.Errorf("catalog: set ref %q in dataset %q: generation %d is negative", name, dataset, gen)
	}
	now := time.Now().UnixNano()
	var res sql.Result
	var err error
	if gen == 0 {
		res, err = db.db.ExecContext(ctx, db.q(`INSERT INTO refs (dataset, name, target, gen, updated) VALUES ($1, $2, $3, 1, $4)
			ON CONFLICT (dataset, name) DO NOTHING`), dataset, name, target, now)
	} else {
		res, err = db.db.ExecContext(ctx, db.q(`UPDATE refs SET target = $1, gen = gen + 1, updated = $2
			WHERE dataset = $3 AND name = $4 AND gen = $5`), target, now, dataset, name, gen)
	}
	if err != nil {
		return Ref{}, fmt.Errorf("catalog: set ref %q in dataset %q: %w", name, dataset, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return Ref{}, fmt.Errorf("catalog: set ref %q in dataset %q: %w", name, dataset, err)
	} else if n != 1 {
		cur, err := db.Ref(ctx, dataset, name)
		return Ref{}, refMoved("set", dataset, name, gen, cur, err)
	}
	return Ref{Dataset: dataset, Name: name, Target: target, Gen: gen + 1, Updated: fromNanos(now)}, nil
}

// DeleteRef removes a ref if it is still at generation gen. It returns
// ErrNoRef if there is no such ref and ErrRefMoved if it has moved.
func (db *DB) DeleteRef(ctx context.Context, dataset, name string, gen int64) error {
	if err := checkRef(dataset, name); err != nil {
		return fmt.Errorf("catalog: delete ref: %w", err)
	}
	res, err := db.db.ExecContext(ctx, db.q(`DELETE FROM refs WHERE dataset = $1 AND name = $2 AND gen = $3`), dataset, name, gen)
	if err != nil {
		return fmt.Errorf("catalog: delete ref %q in dataset %q: %w", name, dataset, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("catalog: delete ref %q in dataset %q: %w", name, dataset, err)
	} else if n == 1 {
		return nil
	}
	cur, err := db.Ref(ctx, dataset, name)
	if errors.Is(err, ErrNoRef) {
		return err
	}
	return refMoved("delete", dataset, name, gen, cur, err)
}

// refMoved explains a failed compare-and-swap: what the caller expected
// and what the ref held when read again (cur, or readErr).
func refMoved(op, dataset, name string, gen int64, cur Ref, readErr error) error {
	expected := fmt.Sprintf("generation %d", gen)
	if gen == 0 {
		expected = "no ref"
	}
	var found string
	switch {
	case readErr == nil:
		found = fmt.Sprintf("generation %d (-> %s)", cur.Gen, cur.Target)
	case errors.Is(readErr, ErrNoRef):
		found = "no ref"
	default:
		found = fmt.Sprintf("an unreadable ref (%v)", readErr)
	}
	return fmt.Errorf("%w: %s ref %q in dataset %q: expected %s, found %s; read the ref again and retry",
		ErrRefMoved, op, name, dataset, expected, found)
}

// TouchPrincipal records that p acted at time at: the first such call
// creates its row; later ones count the action, widen [FirstSeen,
// LastSeen] to include at, and update the UID when p carries one.
// p's FirstSeen, LastSeen and Actions are ignored.
func (db *DB) TouchPrincipal(ctx context.Context, p Principal, at time.Time) error {
	if p.Kind != "os" && p.Kind != "api" {
		return fmt.Errorf("catalog: touch principal %q: kind %q is neither \"os\" nor \"api\"", p.Name, p.Kind)
	}
	if err := checkName("principal name", p.Name); err != nil {
		return fmt.Errorf("catalog: touch principal: %w", err)
	}
	t, err := unixNanos("time", at)
	if err != nil {
		return fmt.Errorf("catalog: touch principal %s %q: %w", p.Kind, p.Name, err)
	}
	var uid any
	if p.UID != nil {
		uid = int64(*p.UID)
	}
	_, err = db.db.ExecContext(ctx, db.q(`INSERT INTO principals (kind, name, uid, first_seen, last_seen, actions)
		VALUES ($1, $2, $3, $4, $4, 1)
		ON CONFLICT (kind, name) DO UPDATE SET
			uid = COALESCE(excluded.uid, principals.uid),
			first_seen = CASE WHEN excluded.first_seen < principals.first_seen THEN excluded.first_seen ELSE principals.first_seen END,
			last_seen = CASE WHEN excluded.last_seen > principals.last_seen THEN excluded.last_seen ELSE principals.last_seen END,
			actions = principals.actions + 1`), p.Kind, p.Name, uid, t)
	if err != nil {
		return fmt.Errorf("catalog: touch principal %s %q: %w", p.Kind, p.Name, err)
	}
	return nil
}

// Principals lists everyone who has acted, by kind and name.
func (db *DB) Principals(ctx context.Context) ([]Principal, error) {
	rs, err := db.db.QueryContext(ctx, `SELECT kind, name, uid, first_seen, last_seen, actions FROM principals ORDER BY kind, name`)
	if err != nil {
		return nil, fmt.Errorf("catalog: principals: %w", err)
	}
	defer rs.Close()
	var out []Principal
	for rs.Next() {
		var p Principal
		var uid sql.NullInt64
		var first, last int64
		if err := rs.Scan(&p.Kind, &p.Name, &uid, &first, &last, &p.Actions); err != nil {
			return nil, fmt.Errorf("catalog: principals: %w", err)
		}
		if uid.Valid {
			u := uint32(uid.Int64)
			p.UID = &u
		}
		p.FirstSeen, p.LastSeen = fromNanos(first), fromNanos(last)
		out = append(out, p)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("catalog: principals: %w", err)
	}
	return out, nil
}
