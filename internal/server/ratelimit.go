package server

import (
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/custodyhq/custody/internal/config"
)

// maxLimiters bounds how many keys (tokens, addresses) are tracked, so a
// client cycling through addresses cannot grow the map without end; past
// it, idle ones are swept first, and if none are idle the oldest go.
const maxLimiters = 100_000

// limiterIdle is how long an unused key is kept: long enough that its
// bucket has refilled, so forgetting it changes nothing.
const limiterIdle = 10 * time.Minute

// limiters are token buckets per key: "tok:ID" or "addr:IP".
type limiters struct {
	burst int
	now   func() time.Time
	mu    sync.Mutex
	m     map[string]*limiter
}

type limiter struct {
	l    *rate.Limiter
	used time.Time
}

func newLimiters(rl config.RateLimit, now func() time.Time) *limiters {
	return &limiters{burst: rl.Burst, now: now, m: map[string]*limiter{}}
}

// allow takes one request from key's bucket, which refills at perSecond.
// Refused, it says how long until a request would be allowed.
func (ls *limiters) allow(key string, perSecond float64) (time.Duration, bool) {
	now := ls.now()
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l := ls.m[key]
	if l == nil {
		if len(ls.m) >= maxLimiters {
			ls.sweep(now)
		}
		l = &limiter{l: rate.NewLimiter(rate.Limit(perSecond), ls.burst)}
		ls.m[key] = l
	}
	l.used = now
	r := l.l.ReserveN(now, 1)
	if !r.OK() {
		return time.Second, false
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d, false
	}
	return 0, true
}

// sweep forgets idle keys, or the least recently used half when none is.
func (ls *limiters) sweep(now time.Time) {
	for k, l := range ls.m {
		if now.Sub(l.used) > limiterIdle {
			delete(ls.m, k)
		}
	}
	if len(ls.m) < maxLimiters {
		return
	}
	used := make([]time.Time, 0, len(ls.m))
	for _, l := range ls.m {
		used = append(used, l.used)
	}
	slices.SortFunc(used, time.Time.Compare)
	cut := used[len(used)/2]
	for k, l := range ls.m {
		if !l.used.After(cut) {
			delete(ls.m, k)
		}
	}
}
