package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/catalog"
)

func TestNewSecretIsPrefixedRandomAndHashedWithSHA256(t *testing.T) {
	re := regexp.MustCompile(`^cst_[A-Za-z0-9_-]{43}$`)
	seen := map[string]bool{}
	for range 100 {
		s, h := NewSecret()
		if !re.MatchString(s) {
			t.Fatalf("secret %q is not cst_ and 43 base64url characters", s)
		}
		if want := sha256.Sum256([]byte(s)); !bytes.Equal(h, want[:]) {
			t.Fatalf("hash of %q is not its SHA-256", s)
		}
		if _, err := bearer("Bearer " + s); err != nil {
			t.Fatalf("a new secret does not parse: %v", err)
		}
		if seen[s] {
			t.Fatalf("secret %q issued twice", s)
		}
		seen[s] = true
	}
}

func openCatalog(t *testing.T) *catalog.DB {
	t.Helper()
	db, err := catalog.Open(context.Background(), filepath.Join(t.TempDir(), "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestAuthenticate presents every kind of credential to a real catalog.
func TestAuthenticate(t *testing.T) {
	ctx := context.Background()
	db := openCatalog(t)
	now := time.Now().UTC().Truncate(time.Second)
	issue := func(name string, expires time.Time) (catalog.Token, string) {
		t.Helper()
		secret, hash := NewSecret()
		tok, err := db.CreateToken(ctx, catalog.Token{Name: name, Role: catalog.RoleOperator, Created: now.Add(-time.Hour),
			Expires: expires, CreatedBy: "test"}, hash)
		if err != nil {
			t.Fatal(err)
		}
		return tok, secret
	}
	valid, validSecret := issue("valid", now.Add(time.Hour))
	_, expiredSecret := issue("expired", now)
	revoked, revokedSecret := issue("revoked", time.Time{})
	if _, err := db.RevokeToken(ctx, revoked.ID, now); err != nil {
		t.Fatal(err)
	}
	suspended, suspendedSecret := issue("suspended", time.Time{})
	if _, err := db.SuspendToken(ctx, suspended.ID, now, true); err != nil {
		t.Fatal(err)
	}
	unknownSecret, _ := NewSecret()

	for _, c := range []struct {
		name, header, secret string
		want                 error
	}{
		{"missing", "", "", ErrMissing},
		{"blank", "  ", "", ErrMissing},
		{"basic scheme", "Basic " + validSecret, validSecret, ErrMalformed},
		{"no scheme", validSecret, validSecret, ErrMalformed},
		{"no secret", "Bearer", "", ErrMalformed},
		{"empty secret", "Bearer ", "", ErrMalformed},
		{"wrong prefix", "Bearer xst_" + validSecret[4:], validSecret[4:], ErrMalformed},
		{"truncated", "Bearer " + validSecret[:len(validSecret)-1], validSecret[:len(validSecret)-1], ErrMalformed},
		{"extended", "Bearer " + validSecret + "A", validSecret, ErrMalformed},
		{"two secrets", "Bearer " + validSecret + " " + validSecret, validSecret, ErrMalformed},
		{"standard base64", "Bearer cst_" + strings.Repeat("+", 43), "", ErrMalformed},
		{"unknown", "Bearer " + unknownSecret, unknownSecret, ErrUnknown},
		{"expired", "Bearer " + expiredSecret, expiredSecret, ErrExpired},
		{"revoked", "Bearer " + revokedSecret, revokedSecret, ErrRevoked},
		{"suspended", "Bearer " + suspendedSecret, suspendedSecret, ErrSuspended},
		{"valid", "Bearer " + validSecret, validSecret, nil},
		{"scheme in lower case", "bearer " + validSecret, validSecret, nil},
		{"extra spaces", "  Bearer   " + validSecret + " ", validSecret, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			tok, err := Authenticate(ctx, db, c.header, now)
			if !errors.Is(err, c.want) {
				t.Fatalf("Authenticate: %v, want %v", err, c.want)
			}
			if err != nil {
				if tok.ID != "" {
					t.Errorf("a refused request returned token %+v", tok)
				}
				if c.secret != "" && strings.Contains(err.Error(), c.secret) {
					t.Errorf("the error shows the secret: %v", err)
				}
				// Not even a good part of it.
				if len(c.secret) > 12 && strings.Contains(err.Error(), c.secret[4:12]) {
					t.Errorf("the error shows part of the secret: %v", err)
				}
				return
			}
			if tok.ID != valid.ID || tok.Role != catalog.RoleOperator || !tok.LastUsed.Equal(now) {
				t.Fatalf("authenticated as %+v", tok)
			}
		})
	}

	// The token expires at Expires, not after.
	if _, err := Authenticate(ctx, db, "Bearer "+validSecret, valid.Expires); !errors.Is(err, ErrExpired) {
		t.Fatalf("at its expiry: %v", err)
	}
	// The use was recorded.
	got, err := db.TokenByHash(ctx, Hash(validSecret))
	if err != nil || !got.LastUsed.Equal(now) {
		t.Fatalf("last use %v (%v), want %v", got.LastUsed, err, now)
	}
}

// fakeStore is a TokenStore whose answers the test chooses.
type fakeStore struct {
	tok      catalog.Token
	err      error
	touchErr error
	touches  int
}

func (f *fakeStore) TokenByHash(context.Context, []byte) (catalog.Token, error) { return f.tok, f.err }
func (f *fakeStore) TouchToken(context.Context, string, time.Time) error {
	f.touches++
	return f.touchErr
}

func TestAuthenticateRefusesATokenWhoseHashDiffers(t *testing.T) {
	secret, hash := NewSecret()
	other := bytes.Clone(hash)
	other[31] ^= 1
	for _, h := range [][]byte{other, hash[:16], nil} {
		s := &fakeStore{tok: catalog.Token{ID: "tok_1", Role: catalog.RoleAdmin, Hash: h}}
		if _, err := Authenticate(context.Background(), s, "Bearer "+secret, time.Now()); !errors.Is(err, ErrUnknown) {
			t.Errorf("store returned hash %x: %v, want ErrUnknown", h, err)
		}
	}
}

func TestAuthenticateReportsStoreFailures(t *testing.T) {
	secret, hash := NewSecret()
	ctx := context.Background()
	now := time.Now()
	broken := errors.New("disk on fire")
	s := &fakeStore{err: broken}
	if _, err := Authenticate(ctx, s, "Bearer "+secret, now); !errors.Is(err, broken) || strings.Contains(err.Error(), secret) {
		t.Fatalf("lookup failure: %v", err)
	}
	s = &fakeStore{tok: catalog.Token{ID: "tok_1", Hash: hash}, touchErr: broken}
	if _, err := Authenticate(ctx, s, "Bearer "+secret, now); !errors.Is(err, broken) || strings.Contains(err.Error(), secret) {
		t.Fatalf("touch failure: %v", err)
	}
	// A use recorded within the minute is not written again.
	s = &fakeStore{tok: catalog.Token{ID: "tok_1", Hash: hash, LastUsed: now.Add(-59 * time.Second)}}
	if _, err := Authenticate(ctx, s, "Bearer "+secret, now); err != nil || s.touches != 0 {
		t.Fatalf("recent use: %v, %d touches", err, s.touches)
	}
	s.tok.LastUsed = now.Add(-time.Minute)
	if _, err := Authenticate(ctx, s, "Bearer "+secret, now); err != nil || s.touches != 1 {
		t.Fatalf("use a minute old: %v, %d touches", err, s.touches)
	}
}

func TestParseExpiry(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"":      0,
		"90d":   90 * 24 * time.Hour,
		"1d":    24 * time.Hour,
		"12h":   12 * time.Hour,
		"1h30m": 90 * time.Minute,
		"3660d": 3660 * 24 * time.Hour,
	} {
		if got, err := ParseExpiry(in); err != nil || got != want {
			t.Errorf("ParseExpiry(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"0d", "-1d", "+5d", "0h", "-12h", "d", "1.5d", "90", "ninety days", "3661d",
		"99999999999999999999d", "1000000h", " 90d", "90D"} {
		if got, err := ParseExpiry(in); err == nil {
			t.Errorf("ParseExpiry(%q) = %v, want an error", in, got)
		}
	}
}

// FuzzBearer checks the Authorization header parser: it never panics,
// accepts only well-formed secrets, and its errors are bare sentinels
// that cannot echo the header.
func FuzzBearer(f *testing.F) {
	secret, _ := NewSecret()
	for _, s := range []string{"", "Bearer", "Bearer ", "Bearer " + secret, "bearer  " + secret + " ", "Basic " + secret,
		"Bearer cst_", "Bearer " + secret + secret, "Bearer cst_" + strings.Repeat("=", 43), "Bearer\t" + secret} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		got, err := bearer(header)
		if err != nil {
			if err != ErrMissing && err != ErrMalformed {
				t.Fatalf("bearer(%q) = error %v, not a bare sentinel", header, err)
			}
			if got != "" {
				t.Fatalf("bearer(%q) returned %q with an error", header, got)
			}
			return
		}
		if !strings.HasPrefix(got, SecretPrefix) || len(got) != secretLen || !strings.Contains(header, got) {
			t.Fatalf("bearer(%q) = %q", header, got)
		}
		if b, err := base64.RawURLEncoding.Strict().DecodeString(got[len(SecretPrefix):]); err != nil || len(b) != secretBytes {
			t.Fatalf("bearer(%q) accepted %q, which is not 32 bytes of base64url", header, got)
		}
		if again, err := bearer("Bearer " + got); err != nil || again != got {
			t.Fatalf("canonical form of %q does not parse back: %q %v", header, again, err)
		}
	})
}
