package guard

import (
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/guard/detect"
	"github.com/custodyhq/custody/internal/testkit"
	"github.com/custodyhq/custody/internal/watch"
)

func TestGuardOpensNoIncidentBelowWarning(t *testing.T) {
	tests := []struct {
		name   string
		fire   map[string]map[string]detect.Strength
		events func(r *rig) []watch.Event
	}{
		{"one strong signal", map[string]map[string]detect.Strength{"entropy": {"a": detect.Strong}},
			func(r *rig) []watch.Event {
				return []watch.Event{r.ev(0, watch.CloseWrite, "a", mallory), r.ev(time.Second, watch.Modify, "b", mallory)}
			}},
		{"two principals below warning each", map[string]map[string]detect.Strength{"entropy": {"a": detect.Strong}, "burst": {"b": detect.Weak}},
			func(r *rig) []watch.Event {
				return []watch.Event{r.ev(0, watch.CloseWrite, "a", mallory), r.ev(time.Second, watch.Modify, "b", bob)}
			}},
		{"unknown and root apart", map[string]map[string]detect.Strength{"entropy": {"a": detect.Strong}},
			func(r *rig) []watch.Event {
				return []watch.Event{r.ev(0, watch.CloseWrite, "a", nobody), r.ev(time.Second, watch.CloseWrite, "a", root)}
			}},
		{"signals further apart than the window", map[string]map[string]detect.Strength{"entropy": {"a": detect.Strong}},
			func(r *rig) []watch.Event {
				return []watch.Event{r.ev(0, watch.CloseWrite, "a", mallory), r.ev(3*time.Minute, watch.CloseWrite, "a", mallory),
					r.ev(6*time.Minute, watch.CloseWrite, "a", mallory)}
			}},
		{"events outside every dataset", map[string]map[string]detect.Strength{"canary": {"elsewhere:x": detect.Decisive}},
			func(r *rig) []watch.Event { return []watch.Event{r.ev(0, watch.Delete, "elsewhere:x", mallory)} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			g := r.guard(r.lock, r.stop.stop, Options{}, tt.fire)
			r.run(g, tt.events(r)...)
			if incs := r.incidents(); len(incs) != 0 {
				t.Errorf("%d incidents opened: %+v", len(incs), incs)
			}
			if got := r.led.kinds(); len(got) != 0 {
				t.Errorf("ledger entries %v, want none", got)
			}
			if locks, _ := r.lock.calls(); len(locks) != 0 {
				t.Errorf("Lock called for %v", locks)
			}
			if gates, err := r.db.Gates(r.ctx, true); err != nil || len(gates) != 0 {
				t.Errorf("gates %v (%v), want none", gates, err)
			}
		})
	}
}

func TestGuardOpensIncidentWithRecoveryPoint(t *testing.T) {
	type version struct {
		id, ds string
		at     time.Duration
	}
	tests := []struct {
		name     string
		versions []version
		want     map[string]string // recovery points
	}{
		{"the last version before the first signal", []version{
			{"v-old", "data", -2 * time.Hour}, {"v-before", "data", -time.Minute}, {"v-after", "data", 30 * time.Second},
		}, map[string]string{"data": "v-before"}},
		{"a version at the first signal is not before it", []version{
			{"v-before", "data", -time.Nanosecond}, {"v-same", "data", 0},
		}, map[string]string{"data": "v-before"}},
		{"other datasets' versions do not count", []version{
			{"v-other", "other", -time.Second}, {"v-data", "data", -time.Hour},
		}, map[string]string{"data": "v-data"}},
		{"no version before: no recovery point", []version{{"v-after", "data", time.Second}}, nil},
		{"no version at all", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			for _, v := range tt.versions {
				r.putVersion(v.id, v.ds, v.at)
			}
			g := r.guard(r.lock, r.stop.stop, Options{}, map[string]map[string]detect.Strength{
				"entropy": {"a": detect.Strong, "b": detect.Weak},
			})
			r.run(g,
				r.ev(0, watch.CloseWrite, "a", mallory),
				r.ev(10*time.Second, watch.CloseWrite, "b", mallory))
			inc := r.only()
			if inc.UID == nil || *inc.UID != 1001 || inc.User != "mallory" || inc.Exe != mallory.Exe {
				t.Errorf("principal uid %v user %q exe %q, want 1001 mallory %s", inc.UID, inc.User, inc.Exe, mallory.Exe)
			}
			if !slices.Equal(inc.Datasets, []string{"data"}) {
				t.Errorf("datasets %v, want [data]", inc.Datasets)
			}
			if !inc.FirstEvent.Equal(t0) {
				t.Errorf("first event %v, want the first signal's time %v", inc.FirstEvent, t0)
			}
			if len(inc.Recovery) != len(tt.want) {
				t.Errorf("recovery points %v, want %v", inc.Recovery, tt.want)
			}
			for ds, id := range tt.want {
				if inc.Recovery[ds] != id {
					t.Errorf("recovery point of %s is %q, want %q", ds, inc.Recovery[ds], id)
				}
			}
			if inc.Severity != catalog.SeverityWarning || inc.State != catalog.IncidentOpen {
				t.Errorf("severity %s state %s, want warning open", inc.Severity, inc.State)
			}
			if len(inc.Signals) != 2 {
				t.Errorf("%d signals recorded, want 2", len(inc.Signals))
			}
			opens := r.led.of("incident.open")
			if len(opens) != 1 {
				t.Fatalf("%d incident.open entries, want 1", len(opens))
			}
			d := opens[0].Detail
			if d["incident"] != "1" || d["severity"] != "warning" || d["principal"] != "uid 1001" || d["signals"] != "entropy×2" {
				t.Errorf("incident.open detail %v", d)
			}
			for ds, id := range tt.want {
				if d["recovery_point."+ds] != id {
					t.Errorf("incident.open detail recovery_point.%s = %q, want %q", ds, d["recovery_point."+ds], id)
				}
			}
			// Below the policy's levels nothing is done about a warning.
			if got := r.led.kinds("incident.open"); len(got) != 0 {
				t.Errorf("responses to a warning: %v", got)
			}
		})
	}
}

// The incident lists, as evidence, what its principal touched from ten
// seconds before the first signal; a version taken after such a touch
// may hold a damaged file, so it cannot be the recovery point.
func TestGuardRecoveryPointPrecedesEveryFileInTheIncident(t *testing.T) {
	r := newRig(t)
	r.putVersion("v-clean", "data", -time.Hour)
	r.putVersion("v-after-first-touch", "data", -5*time.Second)
	g := r.guard(r.lock, r.stop.stop, Options{}, map[string]map[string]detect.Strength{
		"entropy": {"b": detect.Strong, "c": detect.Weak},
	})
	r.run(g,
		r.ev(-8*time.Second, watch.CloseWrite, "a", mallory), // encrypted before any detector was sure
		r.ev(0, watch.CloseWrite, "b", mallory),
		r.ev(time.Second, watch.CloseWrite, "c", mallory))
	inc := r.only()
	files, err := r.db.IncidentFiles(r.ctx, inc.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 || files[0].Path != r.abs("a") {
		t.Fatalf("incident files %+v, want a, b and c", files)
	}
	if got := inc.Recovery["data"]; got != "v-clean" {
		t.Errorf("recovery point %q, want v-clean: v-after-first-touch was taken after a (in the incident) was written", got)
	}
}

func TestGuardRunStopsWhenTheLedgerFails(t *testing.T) {
	r := newRig(t)
	r.led.err = errors.New("stream: disk full")
	g := r.guard(r.lock, r.stop.stop, Options{}, map[string]map[string]detect.Strength{"canary": {"c": detect.Decisive}})
	done := make(chan error, 1)
	go func() { done <- g.Run(r.ctx) }()
	r.feed(g, r.ev(0, watch.Delete, "c", mallory))
	err := <-done
	if err == nil || !strings.Contains(err.Error(), "guard: recording incident.open") || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("Run: %v, want the failed incident.open entry", err)
	}
	if len(r.incidents()) != 1 {
		t.Errorf("the incident is not in the catalog")
	}
}

func TestGuardRecordsSeverityGrowth(t *testing.T) {
	r := newRig(t)
	// Opening takes the signals that opened the incident; growth is
	// scored on the signals that come after.
	g := r.guard(r.lock, r.stop.stop, Options{}, map[string]map[string]detect.Strength{
		"entropy":   {"a": detect.Strong, "b": detect.Weak, "c": detect.Strong, "d": detect.Strong, "e": detect.Strong},
		"extension": {"f": detect.Strong},
		"note":      {"g": detect.Strong},
	})
	var events []watch.Event
	for i, f := range []string{"a", "b", "c", "d", "e", "f", "g"} {
		events = append(events, r.ev(time.Duration(i)*time.Second, watch.CloseWrite, f, mallory))
	}
	r.run(g, events...)
	inc := r.only()
	if inc.Severity != catalog.SeverityCritical {
		t.Errorf("severity %s, want critical", inc.Severity)
	}
	var grew []string
	for _, e := range r.led.of("incident.severity") {
		if e.Detail["incident"] != "1" {
			t.Errorf("incident.severity for incident %s, want 1", e.Detail["incident"])
		}
		grew = append(grew, e.Detail["severity"])
	}
	if want := []string{"major", "critical"}; !slices.Equal(grew, want) {
		t.Errorf("severity growth recorded %v, want %v", grew, want)
	}
	if got := r.led.of("incident.open"); len(got) != 1 || got[0].Detail["severity"] != "warning" {
		t.Errorf("incident.open entries %+v, want one at warning", got)
	}
	if len(inc.Signals) != 7 {
		t.Errorf("%d signals on the incident, want all 7", len(inc.Signals))
	}
	// Major closed the gate, critical locked out: each once, in that order.
	kinds := r.led.kinds("alert", "snapshot")
	want := []string{"incident.open", "incident.severity", "gate.close", "incident.severity", "lockout", "process.freeze", "incident.contain"}
	if !slices.Equal(kinds, want) {
		t.Errorf("ledger %v, want %v", kinds, want)
	}
}

func TestGuardCriticalLocksOutStopsProcessesAndClosesGate(t *testing.T) {
	r := newRig(t)
	g := r.guard(r.lock, r.stop.stop, Options{}, map[string]map[string]detect.Strength{
		"entropy": {"b": detect.Strong, "d": detect.Strong},
		"canary":  {"c": detect.Decisive},
	})
	p := func(pid int) watch.Principal { q := mallory; q.PID = pid; return q }
	r.run(g,
		r.ev(-5*time.Second, watch.Modify, "a", p(100)),
		r.ev(0, watch.CloseWrite, "b", p(101)),
		r.ev(time.Second, watch.Rename, "c", p(102)),
		// After the lockout: more signals, no second lockout.
		r.ev(2*time.Second, watch.CloseWrite, "d", p(103)),
		r.ev(3*time.Second, watch.Rename, "c", p(103)),
	)
	inc := r.only()
	if inc.Severity != catalog.SeverityCritical || inc.State != catalog.IncidentContained {
		t.Errorf("severity %s state %s, want critical contained", inc.Severity, inc.State)
	}
	if locks, _ := r.lock.calls(); !slices.Equal(locks, []uint32{1001}) {
		t.Errorf("Lock calls %v, want [1001] once", locks)
	}
	want := []stopCall{{100, 1001, false}, {101, 1001, false}, {102, 1001, false}}
	if got := r.stop.got(); !slices.Equal(got, want) {
		t.Errorf("Stopper calls %v, want %v", got, want)
	}
	los, err := r.db.Lockouts(r.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(los) != 1 || los[0].UID != 1001 || los[0].User != "mallory" || los[0].Incident != inc.ID || los[0].By != "custody-guard" {
		t.Errorf("lockouts %+v, want uid 1001 (mallory) by custody-guard for incident %d", los, inc.ID)
	}
	gates, err := r.db.Gates(r.ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(gates) != 1 || gates[0].Dataset != "" || gates[0].ClosedBy != "custody-guard" ||
		!strings.Contains(gates[0].Reason, "incident 1") || !strings.Contains(gates[0].Reason, "uid 1001") {
		t.Errorf("closed gates %+v, want one for the whole vault naming incident 1 and uid 1001", gates)
	}

	kinds := r.led.kinds("alert", "snapshot")
	wantKinds := []string{"incident.open", "lockout", "process.freeze", "process.freeze", "process.freeze", "incident.contain", "gate.close"}
	if !slices.Equal(kinds, wantKinds) {
		t.Errorf("ledger %v, want %v", kinds, wantKinds)
	}
	for _, e := range r.led.of("lockout") {
		if e.Outcome != "ok" || e.Detail["uid"] != "1001" || e.Detail["user"] != "mallory" || e.Detail["incident"] != "1" {
			t.Errorf("lockout entry %+v", e)
		}
	}
	var pids []string
	for _, e := range r.led.of("process.freeze") {
		pids = append(pids, e.Detail["pid"])
	}
	if !slices.Equal(pids, []string{"100", "101", "102"}) {
		t.Errorf("process.freeze pids %v", pids)
	}
	if got := r.led.of("gate.close"); len(got) != 1 || got[0].Detail["gate"] != gates[0].ID || got[0].Outcome != "ok" {
		t.Errorf("gate.close entries %+v, want one for gate %s", got, gates[0].ID)
	}
	for _, e := range r.led.entries {
		if e.Actor.User != "custody-guard" {
			t.Errorf("%s entry by %q, want custody-guard", e.Kind, e.Actor.User)
		}
	}

	// The snapshot ran in the background, and Run waited for it.
	snaps := r.led.of("snapshot")
	if len(snaps) != 1 || snaps[0].Outcome != "ok" || snaps[0].Dataset != "data" || snaps[0].Detail["version"] == "" {
		t.Fatalf("snapshot entries %+v, want one of data", snaps)
	}
	vs, err := r.db.Versions(r.ctx, "data")
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 1 || vs[0].ID != snaps[0].Detail["version"] || !strings.HasPrefix(vs[0].Message, "incident 1:") {
		t.Errorf("versions %+v, want the incident's snapshot %s", vs, snaps[0].Detail["version"])
	}

	for prefix, want := range map[string][]string{
		"lockout uid 1001": {"ok"},
		"freeze pid":       {"ok", "ok", "ok"},
		"gate closed g":    {"ok"},
		"snapshot data ":   {"ok"},
	} {
		if got := actionOutcomes(inc, prefix); !slices.Equal(got, want) {
			t.Errorf("actions %q: outcomes %v, want %v (actions %+v)", prefix, got, want, inc.Actions)
		}
	}
}

func TestGuardNeverLocksOutRootOrUnknown(t *testing.T) {
	tests := []struct {
		name    string
		p       watch.Principal
		outcome string
	}{
		{"root", root, "skipped: root cannot be locked out"},
		{"unknown", nobody, "skipped: the principal is unknown (no attribution: inotify?)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			g := r.guard(r.lock, r.stop.stop, Options{}, map[string]map[string]detect.Strength{"canary": {"c": detect.Decisive}})
			r.run(g, r.ev(0, watch.Delete, "c", tt.p))
			inc := r.only()
			if locks, _ := r.lock.calls(); len(locks) != 0 {
				t.Errorf("Lock called for %v", locks)
			}
			if got := r.stop.got(); len(got) != 0 {
				t.Errorf("Stopper called: %v", got)
			}
			los, err := r.db.Lockouts(r.ctx)
			if err != nil || len(los) != 0 {
				t.Errorf("lockouts %+v (%v), want none", los, err)
			}
			if inc.State != catalog.IncidentOpen {
				t.Errorf("state %s, want open: nothing contained it", inc.State)
			}
			entries := r.led.of("lockout")
			if len(entries) != 1 || entries[0].Outcome != tt.outcome {
				t.Errorf("lockout entries %+v, want one with outcome %q", entries, tt.outcome)
			}
			if got := actionOutcomes(inc, "lockout "); !slices.Equal(got, []string{tt.outcome}) {
				t.Errorf("lockout actions %v, want [%s]", got, tt.outcome)
			}
			if got := r.led.of("incident.contain"); len(got) != 0 {
				t.Errorf("incident.contain recorded: %+v", got)
			}
			// The other responses still happen.
			if got := r.led.of("gate.close"); len(got) != 1 {
				t.Errorf("%d gate.close entries, want 1", len(got))
			}
		})
	}
}

func TestGuardLockoutFailureLeavesIncidentOpen(t *testing.T) {
	tests := []struct {
		name    string
		lock    func() (Locker, *fakeLocker)
		outcome string
	}{
		{"Lock fails", func() (Locker, *fakeLocker) {
			l := newFakeLocker()
			l.err = errors.New("fanotify: operation not permitted")
			return l, l
		}, "failed: fanotify: operation not permitted"},
		{"no locker", func() (Locker, *fakeLocker) { return nil, nil }, "failed: " + errNoLocker.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			lock, fake := tt.lock()
			g := r.guard(lock, r.stop.stop, Options{}, map[string]map[string]detect.Strength{"canary": {"c": detect.Decisive}})
			r.run(g, r.ev(0, watch.Delete, "c", mallory))
			inc := r.only()
			if inc.State != catalog.IncidentOpen {
				t.Errorf("state %s, want open", inc.State)
			}
			if fake != nil {
				if locks, _ := fake.calls(); !slices.Equal(locks, []uint32{1001}) {
					t.Errorf("Lock calls %v, want [1001]", locks)
				}
			}
			entries := r.led.of("lockout")
			if len(entries) != 1 || entries[0].Outcome != tt.outcome {
				t.Errorf("lockout entries %+v, want one with outcome %q", entries, tt.outcome)
			}
			if got := actionOutcomes(inc, "lockout uid 1001"); !slices.Equal(got, []string{tt.outcome}) {
				t.Errorf("lockout actions %v, want [%s]", got, tt.outcome)
			}
			if los, err := r.db.Lockouts(r.ctx); err != nil || len(los) != 0 {
				t.Errorf("lockouts %+v (%v), want none: the lockout did not happen", los, err)
			}
			if got := r.led.of("incident.contain"); len(got) != 0 {
				t.Errorf("incident.contain recorded: %+v", got)
			}
			// Its processes are still frozen: that much can be done.
			if got := r.stop.got(); !slices.Equal(got, []stopCall{{4242, 1001, false}}) {
				t.Errorf("Stopper calls %v, want pid 4242 frozen", got)
			}
		})
	}
}

func TestGuardProcessPolicy(t *testing.T) {
	tests := []struct {
		process string
		noStop  bool // no Stopper at all
		want    []stopCall
		kind    string // ledger kind of the stop, "" none
	}{
		{process: "", want: []stopCall{{4242, 1001, false}}, kind: "process.freeze"},
		{process: "freeze", want: []stopCall{{4242, 1001, false}}, kind: "process.freeze"},
		{process: "kill", want: []stopCall{{4242, 1001, true}}, kind: "process.kill"},
		{process: "none"},
		{process: "freeze", noStop: true},
	}
	for _, tt := range tests {
		name := tt.process
		if tt.noStop {
			name += " without a stopper"
		}
		t.Run(name, func(t *testing.T) {
			r := newRig(t)
			var stop Stopper
			if !tt.noStop {
				stop = r.stop.stop
			}
			g := r.guard(r.lock, stop, Options{Policy: Policy{Process: tt.process}},
				map[string]map[string]detect.Strength{"canary": {"c": detect.Decisive}})
			r.run(g, r.ev(0, watch.Delete, "c", mallory))
			if got := r.stop.got(); !slices.Equal(got, tt.want) {
				t.Errorf("Stopper calls %v, want %v", got, tt.want)
			}
			for _, k := range []string{"process.freeze", "process.kill"} {
				n := len(r.led.of(k))
				if want := btoi(k == tt.kind); n != want {
					t.Errorf("%d %s entries, want %d", n, k, want)
				}
			}
			if inc := r.only(); inc.State != catalog.IncidentContained {
				t.Errorf("state %s, want contained (the lockout worked)", inc.State)
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestGuardPolicyLevels(t *testing.T) {
	tests := []struct {
		name string
		pol  Policy
		want []string // synchronous ledger kinds
	}{
		{"defaults at major: gate, no lockout", Policy{}, []string{"incident.open", "gate.close"}},
		{"lockout at warning", Policy{Lockout: Warning}, []string{"incident.open", "lockout", "process.freeze", "incident.contain", "gate.close"}},
		{"gate only at critical", Policy{Gate: Critical}, []string{"incident.open"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			g := r.guard(r.lock, r.stop.stop, Options{Policy: tt.pol}, map[string]map[string]detect.Strength{
				"entropy": {"a": detect.Strong}, "extension": {"a": detect.Weak},
			})
			r.run(g, r.ev(0, watch.CloseWrite, "a", mallory))
			if got := r.only().Severity; got != catalog.SeverityMajor {
				t.Fatalf("severity %s, want major", got)
			}
			if got := r.led.kinds("snapshot"); !slices.Equal(got, tt.want) {
				t.Errorf("ledger %v, want %v", got, tt.want)
			}
		})
	}
}

func TestGuardRecordsTouchedFiles(t *testing.T) {
	r := newRig(t)
	g := r.guard(r.lock, r.stop.stop, Options{}, map[string]map[string]detect.Strength{
		"entropy": {"b": detect.Strong, "c": detect.Weak},
	})
	r.run(g,
		r.ev(-30*time.Second, watch.Modify, "long-before", mallory), // before the evidence window
		r.ev(-5*time.Second, watch.Modify, "a", mallory),            // before the first signal
		r.ev(-4*time.Second, watch.Modify, "bobs", bob),             // someone else's
		r.ev(0, watch.CloseWrite, "b", mallory),
		r.ev(time.Second, watch.CloseWrite, "c", mallory), // opens the incident
		r.ev(2*time.Second, watch.Create, "d", mallory),
		r.ev(3*time.Second, watch.Delete, "b", mallory),
		watch.Event{Time: t0.Add(4 * time.Second), Kind: watch.Rename, Path: r.abs("e.locked"), OldPath: r.abs("e"),
			Root: r.path("data", ""), Principal: mallory},
		r.ev(5*time.Second, watch.Modify, "bobs", bob),
	)
	inc := r.only()
	files, err := r.db.IncidentFiles(r.ctx, inc.ID)
	if err != nil {
		t.Fatal(err)
	}
	type file struct{ path, kinds, old string }
	var got []file
	for _, f := range files {
		if f.Dataset != "data" {
			t.Errorf("%s: dataset %q, want data", f.Path, f.Dataset)
		}
		got = append(got, file{strings.TrimPrefix(f.Path, r.path("data", "")+"/"), f.Kinds, strings.TrimPrefix(f.OldPath, r.path("data", "")+"/")})
	}
	want := []file{
		{"a", "modify", ""},
		{"b", "delete,modify", ""},
		{"c", "modify", ""},
		{"d", "create", ""},
		{"e.locked", "rename", "e"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("incident files\n got %v\nwant %v", got, want)
	}
	for _, f := range files {
		if strings.HasSuffix(f.Path, "/b") && !f.First.Equal(t0) {
			t.Errorf("b first seen %v, want its first event %v", f.First, t0)
		}
	}
}

func TestGuardSyncsLockoutsWithCatalog(t *testing.T) {
	r := newRig(t)
	// The catalog says 1001 and 1003 are locked out (`custody incidents
	// contain`); the locker enforces 1002, which the catalog released.
	for _, uid := range []uint32{1001, 1002, 1003} {
		if err := r.db.AddLockout(r.ctx, catalog.Lockout{UID: uid, Since: t0, By: "admin"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.db.ReleaseLockout(r.ctx, 1002, "admin", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	lock := newFakeLocker(1002, 1003)
	g := r.guard(lock, r.stop.stop, Options{}, nil)
	wait := r.start(g)
	// Run syncs before its first event.
	waitFor(t, "the first sync", func() bool { return slices.Equal(lock.Locked(), []uint32{1001, 1003}) })
	if locks, releases := lock.calls(); !slices.Equal(locks, []uint32{1001}) || !slices.Equal(releases, []uint32{1002}) {
		t.Errorf("Lock calls %v, Release calls %v; want [1001] and [1002]", locks, releases)
	}
	// Released in the catalog while the guard runs: released within a tick.
	if _, err := r.db.ReleaseLockout(r.ctx, 1003, "admin", time.Now()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the release of 1003", func() bool { return slices.Equal(lock.Locked(), []uint32{1001}) })
	wait()
	if locks, _ := lock.calls(); !slices.Equal(locks, []uint32{1001}) {
		t.Errorf("Lock calls %v, want 1001 once (the locker kept it)", locks)
	}
}

// waitLedger waits for n entries of kind.
func (r *rig) waitLedger(kind string, n int) {
	r.t.Helper()
	waitFor(r.t, kind+" entries", func() bool { return len(r.led.of(kind)) >= n })
}

func TestGuardReleasedPrincipalOpensNewIncident(t *testing.T) {
	r := newRig(t)
	g := r.guard(r.lock, r.stop.stop, Options{}, map[string]map[string]detect.Strength{
		"canary": {"c": detect.Decisive}, "entropy": {"x": detect.Strong},
	})
	wait := r.start(g, r.ev(0, watch.Delete, "c", mallory))
	r.waitLedger("incident.contain", 1)
	if _, err := r.db.ReleaseLockout(r.ctx, 1001, "admin", time.Now()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the release", func() bool { return len(r.lock.Locked()) == 0 })
	r.feed(g, r.ev(time.Minute, watch.Delete, "c", mallory))
	wait()
	incs := r.incidents()
	if len(incs) != 2 {
		t.Fatalf("%d incidents, want 2: a released principal's next attack is a new incident", len(incs))
	}
	if locks, _ := r.lock.calls(); !slices.Equal(locks, []uint32{1001, 1001}) {
		t.Errorf("Lock calls %v, want 1001 twice", locks)
	}
	if incs[1].State != catalog.IncidentContained {
		t.Errorf("second incident %s, want contained", incs[1].State)
	}
}

// syncCounter counts the lockout syncs made once after holds: a sync is
// the guard's only caller of Locked.
type syncCounter struct {
	Locker
	after func() bool
	syncs atomic.Int32
}

func (s *syncCounter) Locked() []uint32 {
	if s.after() {
		s.syncs.Add(1)
	}
	return s.Locker.Locked()
}

// An incident whose principal could not be locked out (root, unknown, or
// a failed lockout) has no lockout in the catalog; syncing lockouts must
// not take it for a released one and drop it.
func TestGuardKeepsIncidentWithoutLockoutAcrossSyncs(t *testing.T) {
	tests := []struct {
		name string
		p    watch.Principal
		err  error
	}{
		{"root", root, nil},
		{"failed lockout", mallory, errors.New("fanotify: no permission")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			r.lock.err = tt.err
			lock := &syncCounter{Locker: r.lock, after: func() bool { return len(r.led.of("lockout")) > 0 }}
			g := r.guard(lock, r.stop.stop, Options{}, map[string]map[string]detect.Strength{
				"canary": {"c": detect.Decisive, "c2": detect.Decisive},
			})
			wait := r.start(g, r.ev(0, watch.Delete, "c", tt.p))
			r.waitLedger("lockout", 1)
			waitFor(t, "a lockout sync after the lockout", func() bool { return lock.syncs.Load() > 0 })
			r.feed(g, r.ev(2*time.Second, watch.Modify, "after", tt.p), r.ev(3*time.Second, watch.Delete, "c2", tt.p))
			wait()
			incs := r.incidents()
			if len(incs) != 1 {
				t.Fatalf("%d incidents, want 1: the attack went on in the same incident", len(incs))
			}
			files, err := r.db.IncidentFiles(r.ctx, incs[0].ID)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(files, func(f catalog.IncidentFile) bool { return f.Path == r.abs("after") }) {
				t.Errorf("a file touched after a sync is not in the incident: %+v", files)
			}
		})
	}
}

func TestGuardIncidentSpreadingToAnotherDatasetGetsItsRecoveryPoint(t *testing.T) {
	r := newRig(t, "data", "more")
	r.putVersion("v-data", "data", -time.Hour)
	r.putVersion("v-more", "more", -time.Hour)
	g := r.guard(r.lock, r.stop.stop, Options{}, map[string]map[string]detect.Strength{
		"entropy": {"a": detect.Strong, "b": detect.Weak, "more:x": detect.Weak},
	})
	r.run(g,
		r.ev(0, watch.CloseWrite, "a", mallory),
		r.ev(time.Second, watch.CloseWrite, "b", mallory), // opens, in data only
		r.ev(2*time.Second, watch.CloseWrite, "more:x", mallory),
	)
	inc := r.only()
	if !slices.Equal(inc.Datasets, []string{"data", "more"}) {
		t.Errorf("datasets %v, want [data more]", inc.Datasets)
	}
	if inc.Recovery["data"] != "v-data" || inc.Recovery["more"] != "v-more" {
		t.Errorf("recovery points %v, want data:v-data more:v-more", inc.Recovery)
	}
}

func TestGuardAllowancesLearnedFromFalsePositives(t *testing.T) {
	tests := []struct {
		name   string
		p      watch.Principal
		events []string // files written, one a second
		want   string   // the incident's severity; "" none
	}{
		{"within the allowance", mallory, []string{"a", "b"}, ""},
		{"the allowance is the principal's", bob, []string{"a", "b"}, catalog.SeverityWarning},
		{"other detectors count in full", mallory, []string{"a", "b", "c", "d"}, catalog.SeverityWarning},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			if err := r.db.RaiseAllowance(r.ctx, mallory.UID, "entropy", 2); err != nil {
				t.Fatal(err)
			}
			g := r.guard(r.lock, r.stop.stop, Options{}, map[string]map[string]detect.Strength{
				"entropy": {"a": detect.Strong, "b": detect.Strong}, "extension": {"c": detect.Strong, "d": detect.Strong},
			})
			var events []watch.Event
			for i, f := range tt.events {
				events = append(events, r.ev(time.Duration(i)*time.Second, watch.CloseWrite, f, tt.p))
			}
			r.run(g, events...)
			incs := r.incidents()
			switch {
			case tt.want == "" && len(incs) != 0:
				t.Errorf("incidents %+v, want none", incs)
			case tt.want != "" && (len(incs) != 1 || incs[0].Severity != tt.want):
				t.Errorf("incidents %+v, want one at %s", incs, tt.want)
			}
		})
	}
}

func TestGuardIgnoresCustodyItselfAsRoot(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	as := func(p watch.Principal, exe string) watch.Principal { p.Exe = exe; return p }
	tests := []struct {
		name     string
		p        watch.Principal
		incident bool
	}{
		{"custody as root", as(root, self), false},
		{"another program as root", as(root, "/usr/bin/shred"), true},
		{"custody as another user", as(mallory, self), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			g := r.guard(r.lock, r.stop.stop, Options{}, map[string]map[string]detect.Strength{"canary": {"c": detect.Decisive}})
			r.run(g, r.ev(0, watch.Rename, "c", tt.p))
			if got := len(r.incidents()); got != btoi(tt.incident) {
				t.Errorf("%d incidents, want %d", got, btoi(tt.incident))
			}
		})
	}
}

// learner records the extensions the guard teaches it.
type learner struct {
	mu      sync.Mutex
	learned map[string][]string
}

func (*learner) Name() string                         { return "learner" }
func (*learner) Observe(detect.Input) []detect.Signal { return nil }

func (l *learner) LearnExtensions(dataset string, exts ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.learned[dataset] = append(l.learned[dataset], exts...)
}

func TestGuardTeachesDetectorsEachDatasetsExtensions(t *testing.T) {
	r := newRig(t, "data", "models")
	testkit.WriteFiles(t, r.path("data", ""), map[string][]byte{"x.CSV": nil, "Makefile": nil, "deep/er/y.parquet": nil})
	testkit.WriteFiles(t, r.path("models", ""), map[string][]byte{"w.safetensors": nil})
	l := &learner{learned: map[string][]string{}}
	g := New(r.v, r.db, r.led, r.lock, r.stop.stop, Options{Datasets: r.sets, Detectors: []detect.Detector{l}})
	r.run(g)
	want := map[string][]string{"data": {".csv", ".parquet", ".txt"}, "models": {".safetensors", ".txt"}}
	for ds, exts := range want {
		if got := slices.Sorted(slices.Values(l.learned[ds])); !slices.Equal(got, exts) {
			t.Errorf("%s: learned %v, want %v", ds, got, exts)
		}
	}
}

// The guard samples a regular file just written; the detectors see it.
func TestGuardSamplesWrittenFiles(t *testing.T) {
	r := newRig(t)
	if err := os.WriteFile(r.abs("written"), []byte("hello, sampled world"), 0o644); err != nil {
		t.Fatal(err)
	}
	var seen []detect.Input
	g := New(r.v, r.db, r.led, r.lock, r.stop.stop, Options{Datasets: r.sets,
		Detectors: []detect.Detector{recorder{&seen}}})
	r.run(g,
		r.ev(0, watch.CloseWrite, "written", mallory),
		r.ev(time.Second, watch.Modify, "written", mallory),
		r.ev(2*time.Second, watch.CloseWrite, "gone", mallory))
	if len(seen) != 3 {
		t.Fatalf("detectors saw %d events, want 3", len(seen))
	}
	if c := seen[0].Content; c == nil || c.Size != 20 || len(c.Blocks) == 0 || string(c.Blocks[0]) != "hello, sampled world" {
		t.Errorf("close-write content %+v, want the file's bytes", c)
	}
	if seen[1].Content != nil || seen[2].Content != nil {
		t.Errorf("content sampled for a modify or a missing file")
	}
	for _, in := range seen {
		if in.Dataset != "data" {
			t.Errorf("input dataset %q, want data", in.Dataset)
		}
	}
}

type recorder struct{ seen *[]detect.Input }

func (recorder) Name() string { return "recorder" }

func (d recorder) Observe(in detect.Input) []detect.Signal {
	*d.seen = append(*d.seen, in)
	return nil
}
