package guard

import (
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/custodyhq/custody/internal/guard/detect"
	"github.com/custodyhq/custody/internal/watch"
)

// Severity is how bad an incident looks; it only grows while it is open.
type Severity int

// Severities, weakest first. None is below every threshold.
const (
	None Severity = iota
	Warning
	Major
	Critical
)

func (s Severity) String() string {
	switch s {
	case Warning:
		return "warning"
	case Major:
		return "major"
	case Critical:
		return "critical"
	}
	return "none"
}

// ParseSeverity is the inverse of String.
func ParseSeverity(s string) Severity {
	for _, v := range []Severity{Warning, Major, Critical} {
		if v.String() == s {
			return v
		}
	}
	return None
}

// Thresholds turn a principal's signals within the window into a
// severity. Scores are sums of signal strengths (detect.Weak 1, Strong 2,
// Decisive 4).
type Thresholds struct {
	Window   time.Duration // how long a signal counts (default 2 min)
	Warning  int           // default 3: one strong signal alone is not an incident
	Major    int           // default 6, or Warning with two detectors agreeing
	Critical int           // default 10, or Major with three detectors, or any decisive signal
}

func (t *Thresholds) defaults() {
	if t.Window <= 0 {
		t.Window = 2 * time.Minute
	}
	if t.Warning <= 0 {
		t.Warning = 3
	}
	if t.Major <= 0 {
		t.Major = 6
	}
	if t.Critical <= 0 {
		t.Critical = 10
	}
}

// principalKey identifies a principal for scoring: its uid, or "unknown".
type principalKey struct {
	known bool
	uid   uint32
}

func keyOf(p watch.Principal) principalKey {
	if p.UID == nil {
		return principalKey{}
	}
	return principalKey{known: true, uid: *p.UID}
}

func (k principalKey) String() string {
	if !k.known {
		return "unknown"
	}
	return "uid " + strconv.FormatUint(uint64(k.uid), 10)
}

// scorer keeps each principal's recent signals and scores them.
type scorer struct {
	th  Thresholds
	per map[principalKey]*principalScore
}

type principalScore struct {
	signals   []detect.Signal // within the window, oldest first
	total     int
	detectors map[string]int // signals per detector
	decisive  int
}

func (ps *principalScore) count(sg detect.Signal, n int) {
	ps.total += n * int(sg.Strength)
	ps.detectors[sg.Detector] += n
	if ps.detectors[sg.Detector] == 0 {
		delete(ps.detectors, sg.Detector)
	}
	if sg.Strength >= detect.Decisive {
		ps.decisive += n
	}
}

func newScorer(th Thresholds) *scorer {
	th.defaults()
	return &scorer{th: th, per: map[principalKey]*principalScore{}}
}

// add counts signals for k and returns the principal's severity now.
// Signals are ordered by time per principal; older ones than the window
// stop counting.
func (s *scorer) add(k principalKey, now time.Time, sigs ...detect.Signal) Severity {
	ps := s.per[k]
	if ps == nil {
		ps = &principalScore{detectors: map[string]int{}}
		s.per[k] = ps
	}
	ps.signals = append(ps.signals, sigs...)
	for _, sg := range sigs {
		ps.count(sg, 1)
	}
	cut := 0
	for cut < len(ps.signals) && now.Sub(ps.signals[cut].Time) > s.th.Window {
		ps.count(ps.signals[cut], -1)
		cut++
	}
	if cut > 0 {
		ps.signals = slices.Delete(ps.signals, 0, cut)
	}
	if len(ps.signals) == 0 {
		delete(s.per, k)
		return None
	}
	return s.severity(ps)
}

// severity grows with the total strength and with how many different
// detectors agree: one detector firing often is likelier benign than
// three firing together.
func (s *scorer) severity(ps *principalScore) Severity {
	n := len(ps.detectors)
	switch {
	case ps.decisive > 0, ps.total >= s.th.Critical, ps.total >= s.th.Major && n >= 3:
		return Critical
	case ps.total >= s.th.Major, ps.total >= s.th.Warning && n >= 2:
		return Major
	case ps.total >= s.th.Warning:
		return Warning
	}
	return None
}

// severityAllowing is k's severity when the signals of each detector in
// allow count only beyond the allowance learned for k (from incidents
// marked false positives): a detector that fired no more than allowed
// does not count at all.
func (s *scorer) severityAllowing(k principalKey, allow map[string]int) Severity {
	ps := s.per[k]
	if ps == nil {
		return None
	}
	c := principalScore{total: ps.total, decisive: ps.decisive, detectors: maps.Clone(ps.detectors)}
	for d, a := range allow {
		if n := ps.detectors[d]; n > 0 && n <= a {
			for _, sg := range ps.signals {
				if sg.Detector == d {
					c.count(sg, -1)
				}
			}
		}
	}
	return s.severity(&c)
}

// recent is a copy of k's signals within the window.
func (s *scorer) recent(k principalKey) []detect.Signal {
	if ps := s.per[k]; ps != nil {
		return slices.Clone(ps.signals)
	}
	return nil
}

// forget drops k's signals (its incident took them).
func (s *scorer) forget(k principalKey) { delete(s.per, k) }
