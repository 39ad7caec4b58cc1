package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

const day = 24 * time.Hour

// ParseDuration reads a Go duration (90s, 15m, 1h30m) that may start with
// a whole number of days (7d, 1d12h). Negative durations are refused:
// no setting here has a use for one.
func ParseDuration(s string) (time.Duration, error) {
	bad := fmt.Errorf("%s is not a duration (e.g. 90s, 15m, 1h, 7d)", quote(s))
	var days int64
	rest := s
	if i := strings.IndexByte(s, 'd'); i >= 0 {
		if i == 0 || strings.Trim(s[:i], "0123456789") != "" {
			return 0, bad
		}
		n, err := strconv.ParseInt(s[:i], 10, 64)
		if err != nil || n > math.MaxInt64/int64(day) {
			return 0, bad
		}
		days, rest = n, s[i+1:]
		if rest == "" {
			return time.Duration(days) * day, nil
		}
		if rest[0] == '-' || rest[0] == '+' {
			return 0, bad
		}
	}
	d, err := time.ParseDuration(rest)
	switch {
	case err != nil:
		return 0, bad
	case d < 0:
		return 0, fmt.Errorf("%s: a duration may not be negative", quote(s))
	case d > time.Duration(math.MaxInt64)-time.Duration(days)*day:
		return 0, bad
	}
	return time.Duration(days)*day + d, nil
}

// ParseAge reads an age or span: Go durations plus d (days) and w (weeks): "30d", "2w", "36h".
func ParseAge(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	for suffix, unit := range map[string]time.Duration{"d": 24 * time.Hour, "w": 7 * 24 * time.Hour} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			f, err := strconv.ParseFloat(n, 64)
			if err != nil || f < 0 {
				return 0, fmt.Errorf("bad duration %q: use e.g. 30d, 2w or 36h", s)
			}
			return time.Duration(f * float64(unit)), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("bad duration %q: use e.g. 30d, 2w or 36h", s)
	}
	return d, nil
}

// ParseWhen reads a point in time as people give one on the command line
// or in an API query: an RFC 3339 time, a local date (2006-01-02), or an
// age (30d, 2w, 36h: that long before now).
func ParseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation("2006-01-02", s, time.Local); err == nil {
		return t, nil
	}
	if d, err := ParseAge(s); err == nil {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("bad time %q: use 2026-11-01, 2026-11-01T12:00:00Z or an age like 7d or 36h", s)
}
