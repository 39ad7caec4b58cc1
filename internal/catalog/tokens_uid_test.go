package catalog

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/catalog/pgtest"
)

func TestTokenOwnersSQLite(t *testing.T) {
	tokenOwnersSuite(t, opener{fresh: func(t *testing.T) string {
		return filepath.Join(t.TempDir(), "catalog.db")
	}})
}

func TestTokenOwnersPostgres(t *testing.T) {
	server := pgtest.Server(t)
	tokenOwnersSuite(t, opener{fresh: func(t *testing.T) string {
		return pgtest.NewDatabase(t, server)
	}})
}

func uidp(u uint32) *uint32 { return &u }

// tokenOwnersSuite tests the OS user a token acts for: stored, read
// back, and the key by which a lockout suspends its tokens.
func tokenOwnersSuite(t *testing.T, o opener) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)

	t.Run("UIDReadsBack", func(t *testing.T) {
		db := o.open(t, o.fresh(t))
		for i, c := range []struct {
			name string
			uid  *uint32
		}{{"none", nil}, {"root", uidp(0)}, {"alice", uidp(1000)}, {"max", uidp(1<<32 - 1)}} {
			created := now.Add(time.Duration(i) * time.Second) // listed in this order
			made, err := db.CreateToken(ctx, Token{Name: c.name, Role: RoleOperator, UID: c.uid, Created: created, CreatedBy: "admin"}, secretHash(c.name))
			if err != nil {
				t.Fatal(err)
			}
			got, err := db.TokenByHash(ctx, secretHash(c.name))
			if err != nil {
				t.Fatal(err)
			}
			for what, tok := range map[string]Token{"created": made, "read back": got} {
				if !sameUID(tok.UID, c.uid) {
					t.Errorf("%s: %s uid %v, want %v", c.name, what, fmtUID(tok.UID), fmtUID(c.uid))
				}
			}
			if c.uid != nil && made.UID == c.uid {
				t.Errorf("%s: CreateToken returned the caller's uid variable", c.name)
			}
		}
		ts, err := db.Tokens(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(ts) != 4 || ts[0].UID != nil || !sameUID(ts[2].UID, uidp(1000)) {
			t.Errorf("listed tokens' uids: %v", tokenUIDs(ts))
		}
	})

	t.Run("SuspendTokensOf", func(t *testing.T) {
		db := o.open(t, o.fresh(t))
		mk := func(name string, uid *uint32, created, expires time.Time) Token {
			t.Helper()
			tok, err := db.CreateToken(ctx, Token{Name: name, Role: RoleOperator, UID: uid, Created: created, Expires: expires, CreatedBy: "admin"}, secretHash(name))
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}
		a1 := mk("a1", uidp(1001), now, time.Time{})
		a2 := mk("a2", uidp(1001), now.Add(-time.Minute), now.Add(time.Hour))
		revoked := mk("a-revoked", uidp(1001), now, time.Time{})
		if _, err := db.RevokeToken(ctx, revoked.ID, now.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		expired := mk("a-expired", uidp(1001), now.Add(-2*time.Hour), now.Add(-time.Hour))
		other := mk("b", uidp(1002), now, time.Time{})
		service := mk("ci", nil, now, time.Time{})

		at := now.Add(time.Minute)
		got, err := db.SuspendTokensOf(ctx, 1001, at, true)
		if err != nil {
			t.Fatal(err)
		}
		if ids := tokenIDs(got); !slices.Equal(ids, []string{a2.ID, a1.ID}) {
			t.Fatalf("suspended %v, want the active tokens of uid 1001, oldest first: %v", ids, []string{a2.ID, a1.ID})
		}
		for _, tok := range got {
			if !tok.Suspended.Equal(at) {
				t.Errorf("%s returned suspended %v, want %v", tok.Name, tok.Suspended, at)
			}
		}
		suspended := func() map[string]time.Time {
			t.Helper()
			all, err := db.Tokens(ctx, true)
			if err != nil {
				t.Fatal(err)
			}
			out := map[string]time.Time{}
			for _, tok := range all {
				if !tok.Suspended.IsZero() {
					out[tok.ID] = tok.Suspended
				}
			}
			return out
		}
		if s := suspended(); len(s) != 2 || !s[a1.ID].Equal(at) || !s[a2.ID].Equal(at) {
			t.Fatalf("suspended tokens %v, want only %s and %s (not revoked %s, expired %s, another uid's %s, or %s of no uid)",
				s, a1.ID, a2.ID, revoked.ID, expired.ID, other.ID, service.ID)
		}

		// Again (a second lockout of the same uid): nothing changes, the
		// first suspension's time stays, nothing is returned.
		if got, err := db.SuspendTokensOf(ctx, 1001, at.Add(time.Hour), true); err != nil || len(got) != 0 {
			t.Fatalf("second suspension: %v %v, want none changed", tokenIDs(got), err)
		}
		if s := suspended(); !s[a1.ID].Equal(at) {
			t.Fatalf("the second suspension moved the time to %v", s[a1.ID])
		}
		if got, err := db.SuspendTokensOf(ctx, 4242, at, true); err != nil || len(got) != 0 {
			t.Fatalf("a uid with no tokens: %v %v", tokenIDs(got), err)
		}

		lift := at.Add(time.Minute)
		got, err = db.SuspendTokensOf(ctx, 1001, lift, false)
		if err != nil {
			t.Fatal(err)
		}
		if ids := tokenIDs(got); !slices.Equal(ids, []string{a2.ID, a1.ID}) {
			t.Fatalf("resumed %v, want %v", ids, []string{a2.ID, a1.ID})
		}
		if s := suspended(); len(s) != 0 {
			t.Fatalf("still suspended after the lift: %v", s)
		}
		if got, err := db.SuspendTokensOf(ctx, 1001, lift, false); err != nil || len(got) != 0 {
			t.Fatalf("second lift: %v %v, want none changed", tokenIDs(got), err)
		}
		if _, err := db.SuspendTokensOf(ctx, 1001, time.Time{}, true); err == nil {
			t.Fatal("suspended with no time")
		}
	})

	// A catalog from before token owners: its tokens belong to no user.
	t.Run("MigratesOldTokens", func(t *testing.T) {
		dsn := o.fresh(t)
		db := o.open(t, dsn)
		for _, q := range []string{
			`DROP INDEX tokens_uid`,
			`ALTER TABLE tokens DROP COLUMN uid`,
			`DELETE FROM schema_version WHERE version = 7`,
		} {
			if _, err := db.db.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		if _, err := db.db.ExecContext(ctx, db.q(`INSERT INTO tokens (id, name, role, stages, secret_hash, created, expires, revoked, suspended, last_used, created_by)
			VALUES ('tok_0011223344556677', 'old', 'auditor', '', $1, $2, 0, 0, 0, 0, 'admin')`), secretHash("old"), now.UnixNano()); err != nil {
			t.Fatal(err)
		}
		db.Close()
		db = o.open(t, dsn)
		if db.applied != 1 {
			t.Fatalf("reopen applied %d migrations, want 1", db.applied)
		}
		got, err := db.TokenByHash(ctx, secretHash("old"))
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != "tok_0011223344556677" || got.UID != nil {
			t.Fatalf("old token after the migration: %+v, want no uid", got)
		}
	})
}

func sameUID(a, b *uint32) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

func fmtUID(u *uint32) any {
	if u == nil {
		return "none"
	}
	return *u
}

func tokenUIDs(ts []Token) []any {
	var out []any
	for _, t := range ts {
		out = append(out, fmtUID(t.UID))
	}
	return out
}
