package catalog

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// API token roles (see internal/server/auth for what each may do).
const (
	RoleAdmin         = "admin"
	RoleOperator      = "operator"
	RoleDataScientist = "data-scientist"
	RoleAuditor       = "auditor"
)

// Roles lists the token roles, most powerful first.
var Roles = []string{RoleAdmin, RoleOperator, RoleDataScientist, RoleAuditor}

// Token is an API bearer token as the catalog keeps it: everything but
// the secret, of which only a hash is stored.
type Token struct {
	ID        string   // public id, "tok_" + 16 hex: shown in lists, used to revoke
	Name      string   // unique among active tokens
	Role      string   // RoleAdmin, RoleOperator, RoleDataScientist or RoleAuditor
	Stages    []string // data-scientist only: the pipeline stages it may read, sorted (empty: none)
	UID       *uint32  // the OS user the token acts for, whose lockout suspends it; nil: none
	Created   time.Time
	Expires   time.Time // zero: never
	Revoked   time.Time // zero: active
	Suspended time.Time // zero: not suspended (the guard suspends a locked-out principal's tokens)
	LastUsed  time.Time // zero: never used; recorded at most once a minute
	CreatedBy string

	// Hash is the stored hash of the secret, for the authenticator's
	// constant-time check after its lookup. It is no credential (the
	// secret cannot be had from it) but has no business in output either.
	Hash []byte `json:"-"`
}

// Active reports whether t may be used at now: not revoked, not expired.
// (A suspended token is active but refused until the guard lifts the
// suspension.)
func (t Token) Active(now time.Time) bool {
	return t.Revoked.IsZero() && (t.Expires.IsZero() || now.Before(t.Expires))
}

// ErrNoToken: no token has that id, name or hash.
var ErrNoToken = errors.New("catalog: no such token")

// ErrTokenExists: an active token already has the name.
var ErrTokenExists = errors.New("catalog: an active token already has that name")

// ErrBadToken: a token to create has a bad name, role or stages; the
// error says which.
var ErrBadToken = errors.New("catalog: create token")

// ErrTokenRevoked: the token was already revoked.
var ErrTokenRevoked = errors.New("catalog: the token was already revoked")

// tokenIDPrefix starts every token id; names may not start with it, so
// RevokeToken can tell an id from a name.
const tokenIDPrefix = "tok_"

// touchInterval is how stale LastUsed may get: TouchToken writes at most
// once per interval per token, so a busy token costs no write per request.
const touchInterval = time.Minute

const tokenCols = `id, name, role, stages, secret_hash, created, expires, revoked, suspended, last_used, created_by, uid`

// CreateToken stores t with secretHash, the 32-byte hash of its secret
// (never the secret), and returns it with its ID assigned; Created is set
// to now when zero, and Revoked, Suspended and LastUsed are ignored. It
// returns ErrTokenExists when a token active at Created has t.Name.
func (db *DB) CreateToken(ctx context.Context, t Token, secretHash []byte) (Token, error) {
	if t.Created.IsZero() {
		t.Created = time.Now()
	}
	t, err := checkToken(t, secretHash)
	if err != nil {
		return Token{}, fmt.Errorf("%w: %w", ErrBadToken, err)
	}
	var id [8]byte
	rand.Read(id[:])
	t.ID = tokenIDPrefix + hex.EncodeToString(id[:])
	t.Hash = slices.Clone(secretHash)

	tx, err := db.db.BeginTx(ctx, nil) // SQLite: BEGIN IMMEDIATE, one writer
	if err != nil {
		return Token{}, fmt.Errorf("catalog: create token %s: %w", t.Name, err)
	}
	defer tx.Rollback()
	if db.driver == Postgres {
		// One creator at a time across hosts, so two cannot both find
		// the name free.
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(7362839202)"); err != nil {
			return Token{}, fmt.Errorf("catalog: create token %s: lock: %w", t.Name, err)
		}
	}
	var n int
	created := t.Created.UnixNano()
	if err := tx.QueryRowContext(ctx, db.q(`SELECT COUNT(*) FROM tokens WHERE name = $1 AND revoked = 0 AND (expires = 0 OR expires > $2)`),
		t.Name, created).Scan(&n); err != nil {
		return Token{}, fmt.Errorf("catalog: create token %s: %w", t.Name, err)
	}
	if n > 0 {
		return Token{}, fmt.Errorf("%w: %q; revoke it first (`custody token revoke %s`) or choose another name", ErrTokenExists, t.Name, t.Name)
	}
	var uid any // NULL without one
	if t.UID != nil {
		uid = int64(*t.UID)
	}
	if _, err := tx.ExecContext(ctx, db.q(`INSERT INTO tokens (`+tokenCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, 0, $8, $9)`),
		t.ID, t.Name, t.Role, strings.Join(t.Stages, ","), t.Hash, created, nanosOrZero(t.Expires), t.CreatedBy, uid); err != nil {
		return Token{}, fmt.Errorf("catalog: create token %s: %w", t.Name, err)
	}
	if err := tx.Commit(); err != nil {
		return Token{}, fmt.Errorf("catalog: create token %s: commit: %w", t.Name, err)
	}
	return t, nil
}

// checkToken validates a new token and returns it as it reads back.
func checkToken(t Token, secretHash []byte) (Token, error) {
	if len(secretHash) != 32 {
		return t, fmt.Errorf("the secret hash is %d bytes, want 32 (SHA-256); the secret itself is never stored", len(secretHash))
	}
	if err := checkName("token name", t.Name); err != nil {
		return t, err
	}
	if strings.HasPrefix(t.Name, tokenIDPrefix) {
		return t, fmt.Errorf("token name %q starts with %q, which is for token ids; choose another name", t.Name, tokenIDPrefix)
	}
	if !slices.Contains(Roles, t.Role) {
		return t, fmt.Errorf("unknown role %q (%s)", t.Role, strings.Join(Roles, ", "))
	}
	if len(t.Stages) > 0 && t.Role != RoleDataScientist {
		return t, fmt.Errorf("a %s token is not limited to stages; only %s tokens name stages", t.Role, RoleDataScientist)
	}
	for _, s := range t.Stages {
		if s == "" || strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			return t, fmt.Errorf("stage %q is not lower-case letters, digits and '-'", s)
		}
	}
	t.Stages = slices.Compact(slices.Sorted(slices.Values(t.Stages)))
	if len(t.Stages) == 0 {
		t.Stages = nil
	}
	if err := checkName("created by", t.CreatedBy); err != nil {
		return t, err
	}
	var err error
	if t.Created, err = unixTime("creation time", t.Created); err != nil {
		return t, err
	}
	if t.Expires, err = storedTime("expiry", t.Expires); err != nil {
		return t, err
	}
	if !t.Expires.IsZero() && !t.Expires.After(t.Created) {
		return t, fmt.Errorf("token %q would expire at %s, not after its creation at %s", t.Name,
			t.Expires.Format(time.RFC3339), t.Created.Format(time.RFC3339))
	}
	t.Revoked, t.Suspended, t.LastUsed = time.Time{}, time.Time{}, time.Time{}
	if t.UID != nil {
		uid := *t.UID // not the caller's variable
		t.UID = &uid
	}
	return t, nil
}

// nanosOrZero is t as stored, 0 for the zero time; t was checked before.
func nanosOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// TokenByHash returns the token whose secret hashes to secretHash,
// whatever its state (the caller refuses revoked, expired and suspended
// ones), or ErrNoToken.
func (db *DB) TokenByHash(ctx context.Context, secretHash []byte) (Token, error) {
	ts, err := db.tokens(ctx, `WHERE secret_hash = $1`, secretHash)
	if err != nil {
		return Token{}, err
	}
	if len(ts) == 0 {
		return Token{}, ErrNoToken
	}
	return ts[0], nil
}

// Tokens lists tokens, oldest first: the active ones (not revoked, not
// expired now), or with all every token ever created.
func (db *DB) Tokens(ctx context.Context, all bool) ([]Token, error) {
	if all {
		return db.tokens(ctx, `ORDER BY created, id`)
	}
	return db.tokens(ctx, `WHERE revoked = 0 AND (expires = 0 OR expires > $1) ORDER BY created, id`, time.Now().UnixNano())
}

// RevokeToken revokes, at at, the token with id idOrName ("tok_…"), or
// else the token active at at named idOrName, and returns it. It returns
// ErrNoToken when there is none, and ErrTokenRevoked with the token when
// it was revoked before.
func (db *DB) RevokeToken(ctx context.Context, idOrName string, at time.Time) (Token, error) {
	n, err := unixNanos("revocation time", at)
	if err != nil {
		return Token{}, fmt.Errorf("catalog: revoke token %s: %w", idOrName, err)
	}
	id := idOrName
	if !strings.HasPrefix(idOrName, tokenIDPrefix) {
		ts, err := db.tokens(ctx, `WHERE name = $1 AND revoked = 0 AND (expires = 0 OR expires > $2) ORDER BY created, id`, idOrName, n)
		if err != nil {
			return Token{}, err
		}
		if len(ts) == 0 {
			return Token{}, fmt.Errorf("%w: no active token is named %q; `custody token list --all` shows every token, revoke others by id", ErrNoToken, idOrName)
		}
		id = ts[0].ID
	}
	res, err := db.db.ExecContext(ctx, db.q(`UPDATE tokens SET revoked = $1 WHERE id = $2 AND revoked = 0`), n, id)
	if err != nil {
		return Token{}, fmt.Errorf("catalog: revoke token %s: %w", idOrName, err)
	}
	changed, err := res.RowsAffected()
	if err != nil {
		return Token{}, fmt.Errorf("catalog: revoke token %s: %w", idOrName, err)
	}
	t, err := db.token(ctx, id)
	if err != nil {
		return Token{}, err
	}
	if changed == 0 {
		return t, fmt.Errorf("%w: token %s (%s) at %s", ErrTokenRevoked, t.ID, t.Name, t.Revoked.Format(time.RFC3339))
	}
	return t, nil
}

// SuspendToken suspends token id from at (keeping an earlier suspension's
// time), or with suspend false lifts its suspension, and returns it. A
// suspended token stays listed as active but every request with it is
// refused: the guard suspends a locked-out principal's tokens and lifts
// the suspension when the lockout is released.
func (db *DB) SuspendToken(ctx context.Context, id string, at time.Time, suspend bool) (Token, error) {
	var err error
	if suspend {
		var n int64
		if n, err = unixNanos("suspension time", at); err != nil {
			return Token{}, fmt.Errorf("catalog: suspend token %s: %w", id, err)
		}
		_, err = db.db.ExecContext(ctx, db.q(`UPDATE tokens SET suspended = $1 WHERE id = $2 AND suspended = 0`), n, id)
	} else {
		_, err = db.db.ExecContext(ctx, db.q(`UPDATE tokens SET suspended = 0 WHERE id = $1`), id)
	}
	if err != nil {
		return Token{}, fmt.Errorf("catalog: suspend token %s: %w", id, err)
	}
	return db.token(ctx, id)
}

// SuspendTokensOf suspends, from at, every token of OS user uid that is
// active at at and not suspended yet, or with suspend false lifts the
// suspension of every such token that is suspended, and returns the
// tokens it changed, oldest first. The guard calls it when it locks uid
// out and when the lockout is released; a token already in the wanted
// state (suspended by an earlier lockout) is left as it is and not
// returned, so the caller records only what changed.
func (db *DB) SuspendTokensOf(ctx context.Context, uid uint32, at time.Time, suspend bool) ([]Token, error) {
	n, err := unixNanos("suspension time", at)
	if err != nil {
		return nil, fmt.Errorf("catalog: suspend the tokens of uid %d: %w", uid, err)
	}
	set, was := "$1", "suspended = 0"
	if !suspend {
		set, was = "0", "suspended <> 0"
	}
	// One statement: a token created meanwhile is either changed or not
	// yet there, never half-seen.
	rs, err := db.db.QueryContext(ctx, db.q(`UPDATE tokens SET suspended = `+set+`
		WHERE uid = $2 AND `+was+` AND revoked = 0 AND (expires = 0 OR expires > $1)
		RETURNING `+tokenCols), n, int64(uid))
	if err != nil {
		return nil, fmt.Errorf("catalog: suspend the tokens of uid %d: %w", uid, err)
	}
	ts, err := scanTokens(rs)
	if err != nil {
		return nil, fmt.Errorf("catalog: suspend the tokens of uid %d: %w", uid, err)
	}
	slices.SortFunc(ts, func(a, b Token) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return ts, nil
}

// TouchToken records that token id was used at at, unless the recorded
// last use is less than a minute older: a busy token costs one write a
// minute, not one a request. An unknown id is not an error (nothing is
// recorded).
func (db *DB) TouchToken(ctx context.Context, id string, at time.Time) error {
	n, err := unixNanos("use time", at)
	if err != nil {
		return fmt.Errorf("catalog: touch token %s: %w", id, err)
	}
	if _, err := db.db.ExecContext(ctx, db.q(`UPDATE tokens SET last_used = $1 WHERE id = $2 AND last_used <= $3`),
		n, id, n-int64(touchInterval)); err != nil {
		return fmt.Errorf("catalog: touch token %s: %w", id, err)
	}
	return nil
}

func (db *DB) token(ctx context.Context, id string) (Token, error) {
	ts, err := db.tokens(ctx, `WHERE id = $1`, id)
	if err != nil {
		return Token{}, err
	}
	if len(ts) == 0 {
		return Token{}, fmt.Errorf("%w: %q; `custody token list --all` shows every token", ErrNoToken, id)
	}
	return ts[0], nil
}

func (db *DB) tokens(ctx context.Context, where string, args ...any) ([]Token, error) {
	rs, err := db.db.QueryContext(ctx, db.q(`SELECT `+tokenCols+` FROM tokens `+where), args...)
	if err != nil {
		return nil, fmt.Errorf("catalog: tokens: %w", err)
	}
	out, err := scanTokens(rs)
	if err != nil {
		return nil, fmt.Errorf("catalog: tokens: %w", err)
	}
	return out, nil
}

// scanTokens reads and closes rs.
func scanTokens(rs *sql.Rows) ([]Token, error) {
	defer rs.Close()
	var out []Token
	for rs.Next() {
		t, err := scanToken(rs)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rs.Err()
}

func scanToken(rs *sql.Rows) (Token, error) {
	var t Token
	var stages string
	var created, expires, revoked, suspended, lastUsed int64
	var uid sql.NullInt64
	if err := rs.Scan(&t.ID, &t.Name, &t.Role, &stages, &t.Hash, &created, &expires, &revoked, &suspended, &lastUsed, &t.CreatedBy, &uid); err != nil {
		return Token{}, err
	}
	if uid.Valid {
		u := uint32(uid.Int64)
		t.UID = &u
	}
	if stages != "" {
		t.Stages = strings.Split(stages, ",")
	}
	t.Created, t.Expires, t.Revoked = fromNanos(created), fromNanos(expires), fromNanos(revoked)
	t.Suspended, t.LastUsed = fromNanos(suspended), fromNanos(lastUsed)
	return t, nil
}
