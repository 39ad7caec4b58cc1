// Package auth issues and checks API bearer tokens and decides what each
// role may do.
//
// A token's secret is "cst_" and 32 random bytes in unpadded base64url.
// The catalog keeps only its SHA-256 hash: a request is authenticated by
// hashing the secret it presents and looking the hash up. What a role
// may do is one table, Matrix; Allowed applies it.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/custodyhq/custody/internal/catalog"
)

// SecretPrefix starts every secret, so one is recognised in a config file,
// a log or a secret scanner, and never taken for something else.
const SecretPrefix = "cst_"

// secretBytes is the secret's entropy: 256 bits.
const secretBytes = 32

// secretLen is the length of a secret as text.
var secretLen = len(SecretPrefix) + base64.RawURLEncoding.EncodedLen(secretBytes)

// The reasons Authenticate refuses a request. Each is a 401 for the
// client; none of their messages (nor those wrapping them) holds the
// secret.
var (
	ErrMissing   = errors.New("auth: no bearer token: send the header Authorization: Bearer cst_…")
	ErrMalformed = errors.New("auth: the Authorization header is not \"Bearer cst_…\" with a token custody issued")
	ErrUnknown   = errors.New("auth: unknown token: check it was copied whole, or ask an admin for one (custody token create)")
	ErrRevoked   = errors.New("auth: the token was revoked: ask an admin for a new one")
	ErrExpired   = errors.New("auth: the token has expired: ask an admin for a new one")
	ErrSuspended = errors.New("auth: the token is suspended while its holder is locked out: an operator must release the lockout")
)

// NewSecret returns a new token secret and the hash to store for it.
//
// The hash is a plain SHA-256, not a password hash (Argon2id, bcrypt): a
// slow hash protects low-entropy secrets people choose from guessing,
// whereas these are 256 random bits that no amount of guessing finds, and
// a slow hash on every request would only hand an attacker a cheap way to
// burn the server's CPU. SHA-256's preimage resistance is all that keeps
// a stolen catalog from yielding working tokens.
func NewSecret() (secret string, hash []byte) {
	b := make([]byte, secretBytes)
	rand.Read(b) // never fails (crypto/rand since Go 1.24)
	secret = SecretPrefix + base64.RawURLEncoding.EncodeToString(b)
	return secret, Hash(secret)
}

// Hash is the hash stored for secret: its SHA-256.
func Hash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// TokenStore looks tokens up; *catalog.DB is one.
type TokenStore interface {
	// TokenByHash returns the token whose secret hashes to hash, with
	// its Hash set, or an error wrapping catalog.ErrNoToken.
	TokenByHash(ctx context.Context, hash []byte) (catalog.Token, error)
	// TouchToken records a use of token id at at.
	TouchToken(ctx context.Context, id string, at time.Time) error
}

// Authenticate returns the token that header, an HTTP Authorization
// value, presents at now; or ErrMissing, ErrMalformed, ErrUnknown,
// ErrRevoked, ErrExpired or ErrSuspended (possibly wrapped with the
// token's public id and name); or another error when the store fails. It
// records the token's use, at most once a minute: a store that cannot
// record it fails the request, as it could not record it in the ledger
// either.
//
// The secret is found by its hash, so the lookup's timing can at most
// reveal bits of a hash, from which no secret can be made. The hash the
// store returns is compared again in constant time, so a store that
// matched loosely (a prefix, a collation) still lets no other secret in.
func Authenticate(ctx context.Context, db TokenStore, header string, now time.Time) (catalog.Token, error) {
	secret, err := bearer(header)
	if err != nil {
		return catalog.Token{}, err
	}
	hash := Hash(secret)
	t, err := db.TokenByHash(ctx, hash)
	if errors.Is(err, catalog.ErrNoToken) {
		return catalog.Token{}, ErrUnknown
	}
	if err != nil {
		return catalog.Token{}, fmt.Errorf("auth: look up the token: %w", err)
	}
	if subtle.ConstantTimeCompare(t.Hash, hash) != 1 {
		return catalog.Token{}, ErrUnknown
	}
	switch {
	case !t.Revoked.IsZero():
		return catalog.Token{}, fmt.Errorf("%w (token %s %q, revoked %s)", ErrRevoked, t.ID, t.Name, t.Revoked.UTC().Format(time.RFC3339))
	case !t.Expires.IsZero() && !now.Before(t.Expires):
		return catalog.Token{}, fmt.Errorf("%w (token %s %q, expired %s)", ErrExpired, t.ID, t.Name, t.Expires.UTC().Format(time.RFC3339))
	case !t.Suspended.IsZero():
		return catalog.Token{}, fmt.Errorf("%w (token %s %q, suspended %s)", ErrSuspended, t.ID, t.Name, t.Suspended.UTC().Format(time.RFC3339))
	}
	// The store skips writes within a minute too; checking here spares
	// most requests the round trip.
	if now.Sub(t.LastUsed) >= time.Minute {
		if err := db.TouchToken(ctx, t.ID, now); err != nil {
			return catalog.Token{}, fmt.Errorf("auth: record the use of token %s: %w", t.ID, err)
		}
		t.LastUsed = now
	}
	return t, nil
}

// bearer returns the secret in an Authorization header value of the form
// "Bearer cst_…" (RFC 6750 section 2.1; the scheme is case-insensitive,
// RFC 9110 section 11.1). It checks the secret's form, so garbage costs
// no lookup. Its errors are bare sentinels: they never echo the header.
func bearer(header string) (string, error) {
	header = strings.Trim(header, " \t") // optional whitespace, RFC 9110 section 5.5
	if header == "" {
		return "", ErrMissing
	}
	scheme, secret, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", ErrMalformed
	}
	secret = strings.TrimLeft(secret, " ")
	if len(secret) != secretLen || !strings.HasPrefix(secret, SecretPrefix) {
		return "", ErrMalformed
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(secret[len(SecretPrefix):])
	if err != nil || len(b) != secretBytes {
		return "", ErrMalformed
	}
	return secret, nil
}

// maxExpiry bounds ParseExpiry: beyond it a token might as well never
// expire, and should say so.
const maxExpiry = 10 * 366 * 24 * time.Hour

// ParseExpiry parses a token lifetime: whole days ("90d"), or a Go
// duration ("12h", "30m", "1h30m"); "" is no expiry (0). It must be
// positive and at most ten years.
func ParseExpiry(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil || n <= 0 || strings.HasPrefix(days, "+") {
			return 0, fmt.Errorf("token lifetime %q: give a positive whole number of days, like 90d", s)
		}
		if n > int64(maxExpiry/(24*time.Hour)) {
			return 0, fmt.Errorf("token lifetime %q is more than ten years: leave --expires out for a token that never expires", s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("token lifetime %q: give days (90d) or hours (12h)", s)
		}
	}
	switch {
	case d <= 0:
		return 0, fmt.Errorf("token lifetime %q is not positive: give days (90d) or hours (12h)", s)
	case d > maxExpiry:
		return 0, fmt.Errorf("token lifetime %q is more than ten years: leave --expires out for a token that never expires", s)
	}
	return d, nil
}
