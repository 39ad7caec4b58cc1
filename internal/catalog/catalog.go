// Package catalog is Custody's metadata database, SQLite by default and
// PostgreSQL when several hosts share a vault: one schema, embedded
// migrations.
package catalog

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"
	"github.com/ncruces/go-sqlite3"
	_ "github.com/ncruces/go-sqlite3/driver"
)

// Driver names returned by DB.Driver.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

// ErrSchemaTooNew: the database was migrated by a newer Custody.
var ErrSchemaTooNew = errors.New("schema is newer than this version of custody knows")

// ErrDamaged: the SQLite file is not a readable database (truncated,
// overwritten, or not a catalog at all).
var ErrDamaged = errors.New("the catalog database is damaged")

// damaged marks SQLite's corruption errors with ErrDamaged and says what
// to do; other errors pass through.
func damaged(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sqlite3.CORRUPT) || errors.Is(err, sqlite3.NOTADB) ||
		strings.Contains(err.Error(), "database disk image is malformed") || strings.Contains(err.Error(), "file is not a database") {
		return fmt.Errorf("%w (%v): keep the file for forensics and restore the catalog from a backup; "+
			"the checkpoints in the vault still let `custody audit verify` check a restored copy", ErrDamaged, err)
	}
	return err
}

// DB is an open catalog.
type DB struct {
	db      *sql.DB
	driver  string
	path    string // SQLite: the database file
	applied int    // migrations run by Open, for tests

	// retryFor bounds how long an incident write that races other writers
	// keeps trying: incidentRetryFor, shorter in tests.
	retryFor time.Duration

	// recent holds the stored hashes of the page of rows Records read
	// last, by record index.
	recent struct {
		sync.Mutex
		rows map[int64][]byte
	}

	// stmts are the prepared statements of the hot read queries (audit
	// search, versions), by their SQL: the API runs them thousands of
	// times a second, and parsing each again costs about a tenth of it.
	stmts struct {
		sync.Mutex
		m map[string]*sql.Stmt
	}
}

// ChangeMark is a mark that differs whenever the catalog may have changed
// since it was last taken, for pollers that want to skip reading an
// unchanged catalog (an idle guard asking for lockouts each second). With
// SQLite it is the size and modification time of the database and its
// write-ahead log, which every commit, by any process, touches; with
// PostgreSQL there is none (ok false): poll.
func (db *DB) ChangeMark() (mark string, ok bool) {
	if db.driver != SQLite {
		return "", false
	}
	var b strings.Builder
	for _, p := range []string{db.path, db.path + "-wal"} {
		fi, err := os.Stat(p)
		if err != nil {
			b.WriteString("-;")
			continue
		}
		fmt.Fprintf(&b, "%d,%d;", fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String(), true
}

// maxStmts bounds the prepared statements kept (searches vary in their
// filters; a few dozen shapes cover them).
const maxStmts = 64

// query runs query (in $n form) through a prepared statement kept for
// reuse.
func (db *DB) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := db.prepared(ctx, db.q(query))
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// prepared returns query (in the driver's form) prepared, kept for reuse.
func (db *DB) prepared(ctx context.Context, query string) (*sql.Stmt, error) {
	db.stmts.Lock()
	st := db.stmts.m[query]
	db.stmts.Unlock()
	if st != nil {
		return st, nil
	}
	st, err := db.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	db.stmts.Lock()
	defer db.stmts.Unlock()
	if old := db.stmts.m[query]; old != nil {
		st.Close()
		return old, nil
	}
	if db.stmts.m == nil || len(db.stmts.m) >= maxStmts {
		// Closing waits for no one: rows still open keep theirs until
		// they are closed (database/sql counts them).
		for _, old := range db.stmts.m {
			old.Close()
		}
		db.stmts.m = map[string]*sql.Stmt{}
	}
	db.stmts.m[query] = st
	return st, nil
}

//go:embed migrations/*.sql
var migrationFS embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

// migrations lists the embedded migrations in version order. Files are
// named NNNN_name.sql.
func migrations() ([]migration, error) {
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, n := range names {
		base := filepath.Base(n)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("catalog: bad migration file name %q", base)
		}
		b, err := migrationFS.ReadFile(n)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: base, sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i := range out {
		if out[i].version != i+1 {
			return nil, fmt.Errorf("catalog: migrations not numbered 1..n: %s", out[i].name)
		}
	}
	return out, nil
}

// SchemaVersion is the newest schema this code knows.
func SchemaVersion() int {
	ms, err := migrations()
	if err != nil {
		panic(err)
	}
	return len(ms)
}

// dialect substitutions: the migrations are written once.
var substitutions = map[string][2]string{ // {sqlite, postgres}
	"{{INTPK}}": {"INTEGER PRIMARY KEY", "BIGINT PRIMARY KEY"},
	"{{BLOB}}":  {"BLOB", "BYTEA"},
	"{{C}}":     {"", `COLLATE "C"`},
}

func (db *DB) dialect(s string) string {
	i := 0
	if db.driver == Postgres {
		i = 1
	}
	for k, v := range substitutions {
		s = strings.ReplaceAll(s, k, v[i])
	}
	return s
}

var placeholder = regexp.MustCompile(`\$([0-9]+)`)

// q adapts a query written with $N placeholders to the driver: SQLite
// takes ?N.
func (db *DB) q(query string) string {
	if db.driver == SQLite {
		return placeholder.ReplaceAllString(query, "?$1")
	}
	return query
}

// Open opens the catalog at dsn: a postgres:// or postgresql:// URL, or
// else a SQLite file path (optionally prefixed "sqlite:"), created when
// missing. It brings the schema up to date.
func Open(ctx context.Context, dsn string) (*DB, error) {
	db := &DB{retryFor: incidentRetryFor}
	var err error
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		db.driver = Postgres
		db.db, err = sql.Open("pgx", dsn)
		if err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
		db.db.SetMaxOpenConns(8)
		db.db.SetMaxIdleConns(8)
	default:
		db.driver = SQLite
		path := strings.TrimPrefix(dsn, "sqlite:")
		db.path = path
		if path == "" {
			return nil, errors.New("catalog: empty database path")
		}
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
		// The catalog names users and paths: readable by its owner only.
		// (Its -wal and -shm files are created 0666 less the umask, which
		// the custody command sets to 077.)
		if f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600); err == nil {
			f.Close()
		} else if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("catalog: create %s: %w", abs, err)
		}
		u := url.URL{Scheme: "file", OmitHost: true, Path: abs, RawQuery: "_pragma=busy_timeout(30000)&_pragma=page_size(8192)&_pragma=journal_mode(wal)&_pragma=wal_autocheckpoint(8192)&_pragma=synchronous(normal)&_pragma=foreign_keys(on)&_pragma=temp_store(memory)&_pragma=cache_size(-32768)&_txlock=immediate"}
		db.db, err = sql.Open("sqlite3", u.String())
		if err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
		db.db.SetMaxOpenConns(4)
		db.db.SetMaxIdleConns(4)
		db.db.SetConnMaxIdleTime(time.Minute)
	}
	if err := db.db.PingContext(ctx); err != nil {
		db.db.Close()
		return nil, fmt.Errorf("catalog: open %s database: %w", db.driver, damaged(err))
	}
	if err := db.migrate(ctx); err != nil {
		db.db.Close()
		return nil, damaged(err)
	}
	return db, nil
}

// Close closes the database.
func (db *DB) Close() error {
	db.stmts.Lock()
	for _, st := range db.stmts.m {
		st.Close()
	}
	db.stmts.m = nil
	db.stmts.Unlock()
	return db.db.Close()
}

// Driver is "sqlite" or "postgres".
func (db *DB) Driver() string { return db.driver }

func (db *DB) migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	tx, err := db.db.BeginTx(ctx, nil) // SQLite: BEGIN IMMEDIATE (_txlock)
	if err != nil {
		return fmt.Errorf("catalog: migrate: %w", err)
	}
	defer tx.Rollback()
	if db.driver == Postgres {
		// One migrator at a time across hosts.
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(7362839201)"); err != nil {
			return fmt.Errorf("catalog: migrate: lock: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("catalog: migrate: %w", err)
	}
	var cur int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&cur); err != nil {
		return fmt.Errorf("catalog: migrate: read schema version: %w", err)
	}
	if cur > len(ms) {
		return fmt.Errorf("catalog: %w: database is at version %d, this build knows up to %d; upgrade custody", ErrSchemaTooNew, cur, len(ms))
	}
	for _, m := range ms[cur:] {
		if _, err := tx.ExecContext(ctx, db.dialect(m.sql)); err != nil {
			return fmt.Errorf("catalog: migration %s: %w", m.name, err)
		}
		if _, err := tx.ExecContext(ctx, db.q(`INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)`), m.version, time.Now().UnixNano()); err != nil {
			return fmt.Errorf("catalog: migration %s: %w", m.name, err)
		}
		db.applied++
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("catalog: migrate: commit: %w", err)
	}
	return nil
}
