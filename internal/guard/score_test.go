package guard

import (
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/guard/detect"
	"github.com/custodyhq/custody/internal/watch"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// sig is a signal from detector d of strength s, at offset at from t0.
func sig(d string, s detect.Strength, at time.Duration) detect.Signal {
	return detect.Signal{Detector: d, Strength: s, Time: t0.Add(at), Path: "/data/f", Reason: "test"}
}

func uidKey(uid uint32) principalKey { return keyOf(watch.Principal{UID: &uid}) }

func TestScoreSeverityThresholds(t *testing.T) {
	const (
		weak     = detect.Weak
		strong   = detect.Strong
		decisive = detect.Decisive
	)
	tests := []struct {
		name string
		th   Thresholds
		sigs []detect.Signal
		want Severity
	}{
		{"one strong signal alone is not an incident", Thresholds{}, []detect.Signal{sig("a", strong, 0)}, None},
		{"two weak signals from two detectors are not an incident", Thresholds{},
			[]detect.Signal{sig("a", weak, 0), sig("b", weak, 0)}, None},
		{"warning at 3", Thresholds{}, []detect.Signal{sig("a", strong, 0), sig("a", weak, 0)}, Warning},
		{"5 from one detector stays warning", Thresholds{},
			[]detect.Signal{sig("a", strong, 0), sig("a", strong, 0), sig("a", weak, 0)}, Warning},
		{"major at 6", Thresholds{},
			[]detect.Signal{sig("a", strong, 0), sig("a", strong, 0), sig("a", strong, 0)}, Major},
		{"warning with two detectors agreeing is major", Thresholds{},
			[]detect.Signal{sig("a", strong, 0), sig("b", weak, 0)}, Major},
		{"9 from one detector stays major", Thresholds{},
			[]detect.Signal{sig("a", strong, 0), sig("a", strong, 0), sig("a", strong, 0), sig("a", strong, 0), sig("a", weak, 0)}, Major},
		{"critical at 10", Thresholds{},
			[]detect.Signal{sig("a", strong, 0), sig("a", strong, 0), sig("a", strong, 0), sig("a", strong, 0), sig("a", strong, 0)}, Critical},
		{"major score with three detectors is critical", Thresholds{},
			[]detect.Signal{sig("a", strong, 0), sig("b", strong, 0), sig("c", strong, 0)}, Critical},
		{"three detectors below the major score stay major", Thresholds{},
			[]detect.Signal{sig("a", weak, 0), sig("b", weak, 0), sig("c", weak, 0)}, Major},
		{"any decisive signal is critical", Thresholds{}, []detect.Signal{sig("canary", decisive, 0)}, Critical},
		{"custom warning threshold", Thresholds{Warning: 5},
			[]detect.Signal{sig("a", strong, 0), sig("a", weak, 0)}, None},
		{"custom thresholds from one detector", Thresholds{Warning: 1, Major: 2, Critical: 3},
			[]detect.Signal{sig("a", strong, 0)}, Major},
		{"a decisive signal is critical whatever the thresholds", Thresholds{Warning: 50, Major: 60, Critical: 70},
			[]detect.Signal{sig("canary", decisive, 0)}, Critical},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newScorer(tt.th)
			if got := s.add(uidKey(1001), t0, tt.sigs...); got != tt.want {
				t.Errorf("all at once: severity %s, want %s", got, tt.want)
			}
			// Added one event at a time, the last answer is the same.
			s = newScorer(tt.th)
			var got Severity
			for _, sg := range tt.sigs {
				got = s.add(uidKey(1001), t0, sg)
			}
			if got != tt.want {
				t.Errorf("one by one: severity %s, want %s", got, tt.want)
			}
		})
	}
}

func TestScoreWindowExpiry(t *testing.T) {
	type step struct {
		now  time.Duration // offset from t0
		sigs []detect.Signal
		want Severity
		left int // signals still counted
	}
	tests := []struct {
		name  string
		th    Thresholds
		steps []step
	}{
		{"signals older than the default two minutes stop counting", Thresholds{}, []step{
			{0, []detect.Signal{sig("a", detect.Strong, 0)}, None, 1},
			{time.Minute, []detect.Signal{sig("a", detect.Weak, time.Minute)}, Warning, 2},
			{2*time.Minute + time.Second, []detect.Signal{sig("a", detect.Weak, 2*time.Minute+time.Second)}, None, 2},
		}},
		{"a signal exactly one window old still counts", Thresholds{}, []step{
			{0, []detect.Signal{sig("a", detect.Strong, 0)}, None, 1},
			{2 * time.Minute, []detect.Signal{sig("a", detect.Weak, 2*time.Minute)}, Warning, 2},
		}},
		{"a principal whose signals all expired starts afresh", Thresholds{}, []step{
			{0, []detect.Signal{sig("a", detect.Strong, 0), sig("b", detect.Strong, 0)}, Major, 2},
			{time.Hour, []detect.Signal{sig("a", detect.Weak, time.Hour)}, None, 1},
		}},
		{"a custom window", Thresholds{Window: 10 * time.Second}, []step{
			{0, []detect.Signal{sig("a", detect.Strong, 0)}, None, 1},
			{5 * time.Second, []detect.Signal{sig("a", detect.Weak, 5*time.Second)}, Warning, 2},
			{11 * time.Second, []detect.Signal{sig("a", detect.Weak, 11*time.Second)}, None, 2},
		}},
		{"signals added already out of the window do not count", Thresholds{}, []step{
			{10 * time.Minute, []detect.Signal{sig("a", detect.Strong, 0), sig("a", detect.Strong, 0)}, None, 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newScorer(tt.th)
			k := uidKey(1001)
			for i, st := range tt.steps {
				if got := s.add(k, t0.Add(st.now), st.sigs...); got != st.want {
					t.Errorf("step %d: severity %s, want %s", i, got, st.want)
				}
				if got := len(s.recent(k)); got != st.left {
					t.Errorf("step %d: %d signals counted, want %d", i, got, st.left)
				}
				total := 0
				for _, sg := range s.recent(k) {
					total += int(sg.Strength)
				}
				if ps := s.per[k]; ps != nil && ps.total != total {
					t.Errorf("step %d: running total %d, the signals counted sum to %d", i, ps.total, total)
				}
			}
			if len(s.per) > 1 {
				t.Errorf("scorer keeps %d principals, want at most 1", len(s.per))
			}
		})
	}
}

func TestScoreForget(t *testing.T) {
	s := newScorer(Thresholds{})
	k, other := uidKey(1001), uidKey(1002)
	if got := s.add(k, t0, sig("a", detect.Strong, 0), sig("a", detect.Weak, 0)); got != Warning {
		t.Fatalf("severity %s, want warning", got)
	}
	s.add(other, t0, sig("a", detect.Strong, 0))
	s.forget(k)
	if got := s.recent(k); got != nil {
		t.Errorf("after forget, recent = %v, want nothing", got)
	}
	if got := s.add(k, t0.Add(time.Second), sig("a", detect.Weak, time.Second)); got != None {
		t.Errorf("after forget, one weak signal gives %s, want none", got)
	}
	if got := len(s.recent(other)); got != 1 {
		t.Errorf("forget dropped another principal's signals: %d left, want 1", got)
	}
}

func TestScoreRecentIsACopy(t *testing.T) {
	s := newScorer(Thresholds{})
	k := uidKey(1001)
	s.add(k, t0, sig("a", detect.Strong, 0))
	r := s.recent(k)
	r[0].Strength = detect.Decisive
	if got := s.add(k, t0, sig("a", detect.Weak, 0)); got != Warning {
		t.Errorf("changing recent's answer changed the score: severity %s, want warning", got)
	}
}

func TestScoreSeparatesPrincipals(t *testing.T) {
	root := uint32(0)
	unknown := keyOf(watch.Principal{})
	rootKey := keyOf(watch.Principal{UID: &root, User: "root"})
	alice := keyOf(watch.Principal{UID: new(uint32(1001)), User: "alice", PID: 10})
	aliceAgain := keyOf(watch.Principal{UID: new(uint32(1001)), User: "alice", PID: 11, Exe: "/bin/other"})
	if alice != aliceAgain {
		t.Errorf("one uid through two processes gave two principals: %v and %v", alice, aliceAgain)
	}
	if unknown == rootKey {
		t.Errorf("the unknown principal and uid 0 are one principal")
	}
	for k, want := range map[principalKey]string{unknown: "unknown", rootKey: "uid 0", alice: "uid 1001"} {
		if got := k.String(); got != want {
			t.Errorf("principal %#v is %q, want %q", k, got, want)
		}
	}

	// Each has a strong signal: 6 in all, but none of them reaches 3.
	s := newScorer(Thresholds{})
	for _, k := range []principalKey{unknown, rootKey, alice} {
		if got := s.add(k, t0, sig("a", detect.Strong, 0)); got != None {
			t.Errorf("%s: severity %s, want none", k, got)
		}
	}
	if got := s.add(alice, t0, sig("a", detect.Weak, 0)); got != Warning {
		t.Errorf("uid 1001: severity %s, want warning", got)
	}
	if got := s.add(unknown, t0, sig("a", detect.Strong, 0)); got != Warning {
		t.Errorf("unknown: severity %s, want warning (its own two strong signals)", got)
	}
	if got := len(s.recent(rootKey)); got != 1 {
		t.Errorf("uid 0 has %d signals, want its own 1", got)
	}
}

func TestSeverityStringRoundTrip(t *testing.T) {
	tests := []struct {
		sev  Severity
		name string
	}{
		{None, "none"},
		{Warning, catalog.SeverityWarning},
		{Major, catalog.SeverityMajor},
		{Critical, catalog.SeverityCritical},
	}
	for _, tt := range tests {
		if got := tt.sev.String(); got != tt.name {
			t.Errorf("Severity(%d).String() = %q, want %q", int(tt.sev), got, tt.name)
		}
		if got := ParseSeverity(tt.name); got != tt.sev {
			t.Errorf("ParseSeverity(%q) = %s, want %s", tt.name, got, tt.sev)
		}
	}
	for _, s := range []string{"", "bogus", "Critical", " major", "4"} {
		if got := ParseSeverity(s); got != None {
			t.Errorf("ParseSeverity(%q) = %s, want none", s, got)
		}
	}
	if got := Severity(7).String(); got != "none" {
		t.Errorf("Severity(7).String() = %q, want none", got)
	}
	if !(None < Warning && Warning < Major && Major < Critical) {
		t.Error("severities are not ordered weakest first")
	}
}

func TestScoreSeverityAllowing(t *testing.T) {
	tests := []struct {
		name  string
		sigs  []detect.Signal
		allow map[string]int
		want  Severity
	}{
		{"no allowance", []detect.Signal{sig("entropy", detect.Strong, 0), sig("entropy", detect.Strong, 0)}, nil, Warning},
		{"a detector within its allowance counts for nothing",
			[]detect.Signal{sig("entropy", detect.Strong, 0), sig("entropy", detect.Strong, 0), sig("burst", detect.Weak, 0)},
			map[string]int{"entropy": 2}, None},
		{"the other detectors still count",
			[]detect.Signal{sig("entropy", detect.Strong, 0), sig("burst", detect.Strong, 0), sig("burst", detect.Weak, 0)},
			map[string]int{"entropy": 5}, Warning},
		{"two detectors no longer agree",
			[]detect.Signal{sig("entropy", detect.Weak, 0), sig("burst", detect.Strong, 0), sig("burst", detect.Weak, 0)},
			map[string]int{"entropy": 1}, Warning},
		{"an allowed decisive signal is not decisive",
			[]detect.Signal{sig("burst", detect.Decisive, 0)}, map[string]int{"burst": 1}, None},
		{"an allowance for a detector that did not fire changes nothing",
			[]detect.Signal{sig("entropy", detect.Strong, 0), sig("entropy", detect.Weak, 0)}, map[string]int{"canary": 9}, Warning},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newScorer(Thresholds{})
			k := uidKey(1001)
			before := s.add(k, t0, tt.sigs...)
			if got := s.severityAllowing(k, tt.allow); got != tt.want {
				t.Errorf("severity allowing %v: %s, want %s", tt.allow, got, tt.want)
			}
			// The allowance is a view: the principal's score is unchanged.
			if got := s.severity(s.per[k]); got != before {
				t.Errorf("severity after severityAllowing %s, want %s as before", got, before)
			}
		})
	}
	if got := newScorer(Thresholds{}).severityAllowing(uidKey(1), map[string]int{"a": 1}); got != None {
		t.Errorf("a principal with no signals: %s, want none", got)
	}
}
