package catalog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Offsite is an S3 bucket (and prefix) holding a copy of the vault.
type Offsite struct {
	Name        string
	URL         string // s3://bucket/prefix
	Endpoint    string // "" = AWS
	Region      string
	InsecureTLS bool
	LockMode    string // "", "GOVERNANCE" or "COMPLIANCE"
	LockDays    int
	Created     time.Time
	Baseline    []byte // the bucket's configuration when added, for offsite audit
}

// OffsiteObject is one vault object an offsite holds.
type OffsiteObject struct {
	Key         string // kind/name
	Size        int64
	VersionID   string
	SHA256      string
	RetainUntil time.Time // zero: none
	LegalHold   bool
	PushedAt    time.Time
}

// Errors callers branch on.
var (
	ErrNoOffsite     = errors.New("catalog: no such offsite")
	ErrOffsiteExists = errors.New("catalog: an offsite of that name exists")
)

// AddOffsite records a new offsite.
func (db *DB) AddOffsite(ctx context.Context, o Offsite) error {
	if err := checkName("offsite name", o.Name); err != nil {
		return err
	}
	for what, s := range map[string]string{"url": o.URL, "endpoint": o.Endpoint, "region": o.Region} {
		if err := checkText(what, s); err != nil {
			return err
		}
	}
	switch o.LockMode {
	case "", "GOVERNANCE", "COMPLIANCE":
	default:
		return fmt.Errorf("lock mode %q: use governance or compliance", o.LockMode)
	}
	if o.LockDays < 0 || (o.LockMode != "") != (o.LockDays > 0) {
		return fmt.Errorf("a lock needs both a mode and a positive number of days")
	}
	created, err := unixNanos("created", o.Created)
	if err != nil {
		return err
	}
	if o.Baseline == nil {
		o.Baseline = []byte{}
	}
	res, err := db.db.ExecContext(ctx, db.q(`INSERT INTO offsites (name, url, endpoint, region, insecure_tls, lock_mode, lock_days, created_at, baseline)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (name) DO NOTHING`),
		o.Name, o.URL, o.Endpoint, o.Region, boolInt(o.InsecureTLS), o.LockMode, o.LockDays, created, o.Baseline)
	if err != nil {
		return fmt.Errorf("catalog: add offsite: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("catalog: add offsite: %w", err)
	} else if n == 0 {
		return fmt.Errorf("%w: %q (see `custody offsite status`)", ErrOffsiteExists, o.Name)
	}
	return nil
}

// Offsites lists the offsites by name.
func (db *DB) Offsites(ctx context.Context) ([]Offsite, error) {
	return db.offsites(ctx, `ORDER BY name`)
}

// Offsite returns the offsite called name, or ErrNoOffsite.
func (db *DB) Offsite(ctx context.Context, name string) (Offsite, error) {
	os, err := db.offsites(ctx, `WHERE name = $1`, name)
	if err != nil {
		return Offsite{}, err
	}
	if len(os) == 0 {
		return Offsite{}, fmt.Errorf("%w %q: add it with `custody offsite add`", ErrNoOffsite, name)
	}
	return os[0], nil
}

func (db *DB) offsites(ctx context.Context, where string, args ...any) ([]Offsite, error) {
	rs, err := db.db.QueryContext(ctx, db.q(`SELECT name, url, endpoint, region, insecure_tls, lock_mode, lock_days, created_at, baseline FROM offsites `+where), args...)
	if err != nil {
		return nil, fmt.Errorf("catalog: offsites: %w", err)
	}
	defer rs.Close()
	var out []Offsite
	for rs.Next() {
		var o Offsite
		var insecure int
		var created int64
		if err := rs.Scan(&o.Name, &o.URL, &o.Endpoint, &o.Region, &insecure, &o.LockMode, &o.LockDays, &created, &o.Baseline); err != nil {
			return nil, fmt.Errorf("catalog: offsites: %w", err)
		}
		o.InsecureTLS, o.Created = insecure != 0, fromNanos(created)
		out = append(out, o)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("catalog: offsites: %w", err)
	}
	return out, nil
}

// PutOffsiteObjects records objects an offsite now holds. A key recorded
// before keeps the later of its retention dates and its legal hold: what
// the catalog says is never weaker than what was put on the object.
func (db *DB) PutOffsiteObjects(ctx context.Context, offsite string, objs []OffsiteObject) error {
	if len(objs) == 0 {
		return nil
	}
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("catalog: record offsite objects: %w", err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, db.q(`INSERT INTO offsite_objects (offsite, key, size, version_id, sha256, retain_until, legal_hold, pushed_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (offsite, key) DO UPDATE SET
			size = excluded.size,
			version_id = CASE WHEN excluded.version_id <> '' THEN excluded.version_id ELSE offsite_objects.version_id END,
			sha256 = CASE WHEN excluded.sha256 <> '' THEN excluded.sha256 ELSE offsite_objects.sha256 END,
			retain_until = CASE WHEN excluded.retain_until > offsite_objects.retain_until THEN excluded.retain_until ELSE offsite_objects.retain_until END,
			legal_hold = CASE WHEN excluded.legal_hold > offsite_objects.legal_hold THEN excluded.legal_hold ELSE offsite_objects.legal_hold END`))
	if err != nil {
		return fmt.Errorf("catalog: record offsite objects: %w", err)
	}
	defer stmt.Close()
	for _, o := range objs {
		if o.Key == "" || strings.ContainsRune(o.Key, 0) {
			return fmt.Errorf("catalog: record offsite objects: bad key %q", o.Key)
		}
		var until int64
		if !o.RetainUntil.IsZero() {
			if until, err = unixNanos("retain until", o.RetainUntil); err != nil {
				return err
			}
		}
		pushed, err := unixNanos("pushed at", o.PushedAt)
		if err != nil {
			return err
		}
		if _, err := stmt.ExecContext(ctx, offsite, o.Key, o.Size, o.VersionID, o.SHA256, until, boolInt(o.LegalHold), pushed); err != nil {
			return fmt.Errorf("catalog: record offsite object %s: %w", o.Key, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("catalog: record offsite objects: %w", err)
	}
	return nil
}

// OffsiteObjects calls fn for every object recorded for offsite, by key.
func (db *DB) OffsiteObjects(ctx context.Context, offsite string, fn func(OffsiteObject) error) error {
	rs, err := db.db.QueryContext(ctx, db.q(`SELECT key, size, version_id, sha256, retain_until, legal_hold, pushed_at FROM offsite_objects WHERE offsite = $1 ORDER BY key`), offsite)
	if err != nil {
		return fmt.Errorf("catalog: offsite objects: %w", err)
	}
	defer rs.Close()
	for rs.Next() {
		var o OffsiteObject
		var until, pushed int64
		var hold int
		if err := rs.Scan(&o.Key, &o.Size, &o.VersionID, &o.SHA256, &until, &hold, &pushed); err != nil {
			return fmt.Errorf("catalog: offsite objects: %w", err)
		}
		o.RetainUntil, o.LegalHold, o.PushedAt = fromNanos(until), hold != 0, fromNanos(pushed)
		if err := fn(o); err != nil {
			return err
		}
	}
	if err := rs.Err(); err != nil {
		return fmt.Errorf("catalog: offsite objects: %w", err)
	}
	return nil
}

// ForgetOffsiteObjects drops the records of keys the offsite no longer
// holds (found missing by an audit), so that the next push uploads them
// again.
func (db *DB) ForgetOffsiteObjects(ctx context.Context, offsite string, keys []string) error {
	for _, k := range keys {
		if _, err := db.db.ExecContext(ctx, db.q(`DELETE FROM offsite_objects WHERE offsite = $1 AND key = $2`), offsite, k); err != nil {
			return fmt.Errorf("catalog: forget offsite object %s: %w", k, err)
		}
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
