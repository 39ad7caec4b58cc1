package server

import (
	"context"
	"sync"
	"time"

	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/server/auth"
)

// tokenTTL is how long a looked-up token is trusted without asking the
// catalog again: a revocation, expiry or suspension made by another
// process (the CLI, the guard) takes effect within it; one made through
// this server's API at once.
const tokenTTL = time.Second

// tokenCache is the catalog as auth.Authenticate sees it, with lookups
// kept for tokenTTL so a busy client costs no query per request.
type tokenCache struct {
	db *catalog.DB
	mu sync.Mutex
	m  map[string]cachedToken // by string(hash)
}

type cachedToken struct {
	t   catalog.Token
	err error
	at  time.Time
}

func newTokenCache(db *catalog.DB) *tokenCache {
	return &tokenCache{db: db, m: map[string]cachedToken{}}
}

func (tc *tokenCache) authenticate(ctx context.Context, header string, now time.Time) (catalog.Token, error) {
	return auth.Authenticate(ctx, tc, header, now)
}

// TokenByHash is the catalog's, remembered for tokenTTL (unknown hashes
// too, so guessing costs no query either).
func (tc *tokenCache) TokenByHash(ctx context.Context, hash []byte) (catalog.Token, error) {
	now := time.Now()
	tc.mu.Lock()
	c, ok := tc.m[string(hash)]
	tc.mu.Unlock()
	if ok && now.Sub(c.at) < tokenTTL {
		return c.t, c.err
	}
	t, err := tc.db.TokenByHash(ctx, hash)
	if err != nil && ctx.Err() != nil {
		return t, err
	}
	tc.mu.Lock()
	if len(tc.m) > 10_000 {
		clear(tc.m)
	}
	tc.m[string(hash)] = cachedToken{t: t, err: err, at: now}
	tc.mu.Unlock()
	return t, err
}

// TouchToken records a use, and keeps the cached copy in step so the
// next request does not touch again.
func (tc *tokenCache) TouchToken(ctx context.Context, id string, at time.Time) error {
	if err := tc.db.TouchToken(ctx, id, at); err != nil {
		return err
	}
	tc.mu.Lock()
	for k, c := range tc.m {
		if c.t.ID == id {
			c.t.LastUsed = at
			tc.m[k] = c
		}
	}
	tc.mu.Unlock()
	return nil
}

// forget drops every cached token: after a revocation through the API.
func (tc *tokenCache) forget() {
	tc.mu.Lock()
	clear(tc.m)
	tc.mu.Unlock()
}
