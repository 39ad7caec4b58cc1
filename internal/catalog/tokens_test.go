package catalog

import (
	"context"
	"crypto/sha256"
	"errors"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/custodyhq/custody/internal/catalog/pgtest"
)

func TestTokensSQLite(t *testing.T) {
	tokensSuite(t, opener{fresh: func(t *testing.T) string {
		return filepath.Join(t.TempDir(), "catalog.db")
	}})
}

func TestTokensPostgres(t *testing.T) {
	server := pgtest.Server(t)
	tokensSuite(t, opener{fresh: func(t *testing.T) string {
		return pgtest.NewDatabase(t, server)
	}})
}

func secretHash(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// tokensSuite tests the API tokens' rows: creation, lookup, listing,
// revocation, suspension and last use.
func tokensSuite(t *testing.T, o opener) {
	ctx := context.Background()
	// Tokens(false) asks whether a token is expired now, so tokens here
	// live around the real clock.
	now := time.Now().UTC().Truncate(time.Second)

	t.Run("CreateAndLookUp", func(t *testing.T) {
		db := o.open(t, o.fresh(t))
		in := Token{Name: "ci", Role: RoleDataScientist, Stages: []string{"train", "clean", "train"},
			Created: now, Expires: now.Add(90 * 24 * time.Hour), CreatedBy: "alice",
			Revoked: now, LastUsed: now} // ignored
		tok, err := db.CreateToken(ctx, in, secretHash("s1"))
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`^tok_[0-9a-f]{16}$`).MatchString(tok.ID) {
			t.Fatalf("id %q is not tok_ and 16 hex digits", tok.ID)
		}
		want := Token{ID: tok.ID, Name: "ci", Role: RoleDataScientist, Stages: []string{"clean", "train"},
			Created: now, Expires: now.Add(90 * 24 * time.Hour), CreatedBy: "alice", Hash: secretHash("s1")}
		if d := cmp.Diff(want, tok); d != "" {
			t.Fatalf("created (-want +got):\n%s", d)
		}
		got, err := db.TokenByHash(ctx, secretHash("s1"))
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Fatalf("read back (-want +got):\n%s", d)
		}
		if _, err := db.TokenByHash(ctx, secretHash("s2")); !errors.Is(err, ErrNoToken) {
			t.Fatalf("unknown hash: %v", err)
		}
		if _, err := db.TokenByHash(ctx, nil); !errors.Is(err, ErrNoToken) {
			t.Fatalf("nil hash: %v", err)
		}
		admin, err := db.CreateToken(ctx, Token{Name: "root", Role: RoleAdmin, CreatedBy: "protect"}, secretHash("s2"))
		if err != nil {
			t.Fatal(err)
		}
		if admin.Created.IsZero() || admin.Stages != nil || !admin.Expires.IsZero() {
			t.Fatalf("defaults: %+v", admin)
		}
		// The same secret twice would make a lookup ambiguous.
		if _, err := db.CreateToken(ctx, Token{Name: "other", Role: RoleAuditor, CreatedBy: "alice"}, secretHash("s1")); err == nil {
			t.Fatal("a second token with the same secret hash was stored")
		}
	})

	t.Run("CreateRefuses", func(t *testing.T) {
		db := o.open(t, o.fresh(t))
		ok := Token{Name: "n", Role: RoleOperator, Created: now, CreatedBy: "alice"}
		for name, c := range map[string]struct {
			edit func(*Token)
			hash []byte
			want string
		}{
			"no name":              {func(t *Token) { t.Name = "" }, nil, "empty token name"},
			"control in name":      {func(t *Token) { t.Name = "a\nb" }, nil, "control character"},
			"id-like name":         {func(t *Token) { t.Name = "tok_0011223344556677" }, nil, "token ids"},
			"unknown role":         {func(t *Token) { t.Role = "root" }, nil, "unknown role"},
			"stages on operator":   {func(t *Token) { t.Stages = []string{"train"} }, nil, "not limited to stages"},
			"bad stage":            {func(t *Token) { t.Role, t.Stages = RoleDataScientist, []string{"a,b"} }, nil, "stage"},
			"empty stage":          {func(t *Token) { t.Role, t.Stages = RoleDataScientist, []string{""} }, nil, "stage"},
			"no creator":           {func(t *Token) { t.CreatedBy = "" }, nil, "created by"},
			"expires before birth": {func(t *Token) { t.Expires = now }, nil, "not after its creation"},
			"secret not hash":      {func(*Token) {}, []byte("cst_not-a-hash"), "never stored"},
		} {
			tok := ok
			c.edit(&tok)
			h := c.hash
			if h == nil {
				h = secretHash(name)
			}
			if _, err := db.CreateToken(ctx, tok, h); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s: %v, want an error with %q", name, err, c.want)
			}
		}
		if ts, err := db.Tokens(ctx, true); err != nil || len(ts) != 0 {
			t.Fatalf("refused tokens stored: %v %v", ts, err)
		}
	})

	t.Run("NameUniqueAmongActive", func(t *testing.T) {
		db := o.open(t, o.fresh(t))
		mk := func(secret string, created, expires time.Time) (Token, error) {
			return db.CreateToken(ctx, Token{Name: "ci", Role: RoleOperator, Created: created, Expires: expires, CreatedBy: "alice"}, secretHash(secret))
		}
		old, err := mk("a", now.Add(-2*time.Hour), now.Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		// The first expired: its name is free again.
		cur, err := mk("b", now, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = mk("c", now.Add(time.Second), time.Time{})
		if !errors.Is(err, ErrTokenExists) || !strings.Contains(err.Error(), "token revoke ci") {
			t.Fatalf("duplicate active name: %v", err)
		}
		if _, err := db.RevokeToken(ctx, "ci", now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		again, err := mk("d", now.Add(2*time.Minute), time.Time{})
		if err != nil {
			t.Fatalf("name of a revoked token: %v", err)
		}
		all, err := db.Tokens(ctx, true)
		if err != nil {
			t.Fatal(err)
		}
		if ids := tokenIDs(all); !slices.Equal(ids, []string{old.ID, cur.ID, again.ID}) {
			t.Fatalf("all tokens %v", ids)
		}
		active, err := db.Tokens(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		if ids := tokenIDs(active); !slices.Equal(ids, []string{again.ID}) {
			t.Fatalf("active tokens %v, want %v", ids, again.ID)
		}
	})

	t.Run("ConcurrentCreateOneWins", func(t *testing.T) {
		db := o.open(t, o.fresh(t))
		var wg sync.WaitGroup
		errs := make([]error, 8)
		for i := range errs {
			wg.Go(func() {
				_, errs[i] = db.CreateToken(ctx, Token{Name: "race", Role: RoleAuditor, CreatedBy: "alice"}, secretHash(string(rune('a'+i))))
			})
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, ErrTokenExists):
				t.Errorf("racing create: %v", err)
			}
		}
		if won != 1 {
			t.Fatalf("%d creators won the name", won)
		}
	})

	t.Run("Revoke", func(t *testing.T) {
		db := o.open(t, o.fresh(t))
		a, err := db.CreateToken(ctx, Token{Name: "a", Role: RoleAuditor, Created: now, CreatedBy: "alice"}, secretHash("a"))
		if err != nil {
			t.Fatal(err)
		}
		b, err := db.CreateToken(ctx, Token{Name: "b", Role: RoleAuditor, Created: now, CreatedBy: "alice"}, secretHash("b"))
		if err != nil {
			t.Fatal(err)
		}
		at := now.Add(time.Hour)
		got, err := db.RevokeToken(ctx, a.ID, at)
		if err != nil || got.ID != a.ID || !got.Revoked.Equal(at) {
			t.Fatalf("revoke by id: %+v %v", got, err)
		}
		got, err = db.RevokeToken(ctx, a.ID, at.Add(time.Hour))
		if !errors.Is(err, ErrTokenRevoked) || !got.Revoked.Equal(at) {
			t.Fatalf("second revoke: %+v %v (the first time must stay)", got, err)
		}
		if _, err := db.RevokeToken(ctx, "a", at); !errors.Is(err, ErrNoToken) {
			t.Fatalf("revoke by the name of a revoked token: %v", err)
		}
		if got, err := db.RevokeToken(ctx, "b", at); err != nil || got.ID != b.ID {
			t.Fatalf("revoke by name: %+v %v", got, err)
		}
		for _, idOrName := range []string{"tok_0000000000000000", "nobody"} {
			if _, err := db.RevokeToken(ctx, idOrName, at); !errors.Is(err, ErrNoToken) {
				t.Errorf("revoke %s: %v", idOrName, err)
			}
		}
		if _, err := db.RevokeToken(ctx, b.ID, time.Time{}); err == nil {
			t.Error("revoked with no time")
		}
		// An expired token can still be revoked by id, not by name.
		c, err := db.CreateToken(ctx, Token{Name: "c", Role: RoleAuditor, Created: now, Expires: now.Add(time.Hour), CreatedBy: "alice"}, secretHash("c"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.RevokeToken(ctx, "c", now.Add(2*time.Hour)); !errors.Is(err, ErrNoToken) {
			t.Fatalf("revoke an expired token by name: %v", err)
		}
		if _, err := db.RevokeToken(ctx, c.ID, now.Add(2*time.Hour)); err != nil {
			t.Fatalf("revoke an expired token by id: %v", err)
		}
	})

	t.Run("SuspendAndTouch", func(t *testing.T) {
		db := o.open(t, o.fresh(t))
		tok, err := db.CreateToken(ctx, Token{Name: "a", Role: RoleOperator, Created: now, CreatedBy: "alice"}, secretHash("a"))
		if err != nil {
			t.Fatal(err)
		}
		s1 := now.Add(time.Hour)
		got, err := db.SuspendToken(ctx, tok.ID, s1, true)
		if err != nil || !got.Suspended.Equal(s1) {
			t.Fatalf("suspend: %+v %v", got, err)
		}
		if got, _ := db.SuspendToken(ctx, tok.ID, s1.Add(time.Hour), true); !got.Suspended.Equal(s1) {
			t.Fatalf("second suspension moved the time to %v", got.Suspended)
		}
		if active, _ := db.Tokens(ctx, false); len(active) != 1 {
			t.Fatalf("a suspended token is still listed as active: %v", active)
		}
		if got, err := db.SuspendToken(ctx, tok.ID, time.Time{}, false); err != nil || !got.Suspended.IsZero() {
			t.Fatalf("lift suspension: %+v %v", got, err)
		}
		if _, err := db.SuspendToken(ctx, "tok_0000000000000000", s1, true); !errors.Is(err, ErrNoToken) {
			t.Fatalf("suspend unknown: %v", err)
		}

		lastUsed := func() time.Time {
			t.Helper()
			got, err := db.TokenByHash(ctx, secretHash("a"))
			if err != nil {
				t.Fatal(err)
			}
			return got.LastUsed
		}
		u := now.Add(2 * time.Hour)
		for _, c := range []struct {
			at, want time.Time
		}{
			{u, u},
			{u.Add(59 * time.Second), u}, // within the minute: no write
			{u.Add(time.Minute), u.Add(time.Minute)},
			{u, u.Add(time.Minute)}, // never backwards
		} {
			if err := db.TouchToken(ctx, tok.ID, c.at); err != nil {
				t.Fatal(err)
			}
			if got := lastUsed(); !got.Equal(c.want) {
				t.Fatalf("after touch at %v: last used %v, want %v", c.at, got, c.want)
			}
		}
		if err := db.TouchToken(ctx, "tok_0000000000000000", u); err != nil {
			t.Fatalf("touch unknown: %v", err)
		}
	})

	t.Run("ActiveAt", func(t *testing.T) {
		tok := Token{Created: now, Expires: now.Add(time.Hour)}
		if !tok.Active(now) || tok.Active(now.Add(time.Hour)) {
			t.Fatal("expiry is exclusive of Expires")
		}
		tok.Expires, tok.Revoked = time.Time{}, now
		if tok.Active(now) {
			t.Fatal("revoked token active")
		}
	})
}

func tokenIDs(ts []Token) []string {
	var ids []string
	for _, t := range ts {
		ids = append(ids, t.ID)
	}
	return ids
}
