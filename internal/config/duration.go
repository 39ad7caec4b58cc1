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
