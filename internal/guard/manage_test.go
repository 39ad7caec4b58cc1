package guard

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/guard/detect"
	"github.com/custodyhq/custody/internal/ledger"
	"github.com/custodyhq/custody/internal/testkit"
	"github.com/custodyhq/custody/internal/vaulttest"
	"github.com/custodyhq/custody/internal/watch"
)

// The Manager tests run on the guard rig's real vault and catalog; the
// ledger is the rig's fake, filled through Record as the CLI's and the
// API's closures would.

// manager is a Manager on r acting as alice. Record fails for the kinds
// in failKinds, as a ledger that cannot be written would.
func (r *rig) manager(failKinds ...string) *Manager {
	return &Manager{Vault: r.v, DB: r.db, By: "alice",
		Record: func(ctx context.Context, e ledger.Entry, err error) error {
			e.Actor = ledger.Actor{User: "alice"}
			e.Outcome = "ok"
			if err != nil {
				e.Outcome = "failed: " + err.Error()
			}
			if slices.Contains(failKinds, e.Kind) {
				if err != nil {
					return err
				}
				return fmt.Errorf("%s succeeded but was not recorded in the audit ledger: disk full", e.Kind)
			}
			if aerr := r.led.Add(ctx, e); aerr != nil && err == nil {
				return aerr
			}
			return err
		}}
}

// openIncident stores an open incident by principal uid/user (uid nil:
// unknown) in dataset "data", with the signals' detectors.
func (r *rig) openIncident(uid *uint32, user string, recovery map[string]string, detectors ...string) catalog.Incident {
	r.t.Helper()
	in := catalog.Incident{Severity: catalog.SeverityCritical, UID: uid, User: user, Datasets: []string{"data"},
		FirstEvent: t0, Recovery: recovery}
	for _, d := range detectors {
		in.Signals = append(in.Signals, catalog.IncidentSignal{Detector: d, Strength: int(detect.Strong), Time: t0, Path: r.abs("a"), Reason: "test"})
	}
	in, err := r.db.OpenIncident(r.ctx, in)
	if err != nil {
		r.t.Fatal(err)
	}
	return in
}

// token creates an active API token named name for uid (nil: none).
func (r *rig) token(name string, uid *uint32) catalog.Token {
	r.t.Helper()
	h := sha256.Sum256([]byte("secret of " + name))
	tok, err := r.db.CreateToken(r.ctx, catalog.Token{Name: name, Role: catalog.RoleOperator, UID: uid, CreatedBy: "admin"}, h[:])
	if err != nil {
		r.t.Fatal(err)
	}
	return tok
}

// suspendedTokens are the names of the suspended tokens.
func (r *rig) suspendedTokens() []string {
	r.t.Helper()
	ts, err := r.db.Tokens(r.ctx, true)
	if err != nil {
		r.t.Fatal(err)
	}
	var out []string
	for _, t := range ts {
		if !t.Suspended.IsZero() {
			out = append(out, t.Name)
		}
	}
	slices.Sort(out)
	return out
}

func u32(u uint32) *uint32 { return &u }

func TestManagerContainLocksOutSuspendsTokensAndClosesGate(t *testing.T) {
	r := newRig(t)
	in := r.openIncident(u32(1001), "mallory", nil, "entropy")
	a := r.token("mallory-nb", u32(1001))
	b := r.token("mallory-ci", u32(1001))
	r.token("bob-nb", u32(1002))
	r.token("service", nil)
	m := r.manager()

	res, err := m.Contain(r.ctx, in.ID)
	if err != nil {
		t.Fatal(err)
	}
	if res.Incident.ID != in.ID || res.Incident.State != catalog.IncidentContained {
		t.Errorf("incident %d state %s, want %d contained", res.Incident.ID, res.Incident.State, in.ID)
	}
	if got := tokenNames(res.Suspended); !slices.Equal(got, []string{a.Name, b.Name}) {
		t.Errorf("suspended %v, want mallory's two tokens", got)
	}
	if got := r.suspendedTokens(); !slices.Equal(got, []string{"mallory-ci", "mallory-nb"}) {
		t.Errorf("suspended in the catalog: %v, want only mallory's", got)
	}
	los, err := r.db.Lockouts(r.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(los) != 1 || los[0].UID != 1001 || los[0].User != "mallory" || los[0].Incident != in.ID || los[0].By != "alice" {
		t.Errorf("lockouts %+v, want uid 1001 by alice for incident %d", los, in.ID)
	}
	gates, err := r.db.Gates(r.ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(gates) != 1 || gates[0].ID != res.Gate.ID || gates[0].Dataset != "" || gates[0].ClosedBy != "alice" ||
		gates[0].Reason != fmt.Sprintf("incident %d contained by alice", in.ID) {
		t.Errorf("closed gates %+v, want the vault's, closed by alice for incident %d (result's %s)", gates, in.ID, res.Gate.ID)
	}
	stored := r.only()
	if stored.State != catalog.IncidentContained || len(stored.Actions) != 1 || stored.Actions[0].Action != "state contained" || stored.Actions[0].By != "alice" {
		t.Errorf("stored incident state %s actions %+v, want contained by alice", stored.State, stored.Actions)
	}

	if got, want := r.led.kinds(), []string{"lockout", "token.suspend", "gate.close", "incident.contain"}; !slices.Equal(got, want) {
		t.Fatalf("ledger %v, want %v", got, want)
	}
	id := fmt.Sprint(in.ID)
	for kind, want := range map[string]map[string]string{
		"lockout":          {"incident": id, "uid": "1001"},
		"token.suspend":    {"incident": id, "uid": "1001", "tokens": a.ID + "," + b.ID},
		"gate.close":       {"incident": id, "gate": res.Gate.ID},
		"incident.contain": {"incident": id},
	} {
		e := r.led.of(kind)[0]
		if e.Outcome != "ok" || !maps.Equal(e.Detail, want) {
			t.Errorf("%s entry %s %v, want ok %v", kind, e.Outcome, e.Detail, want)
		}
	}

	// Again (a retry after a failure): the lockout and the suspensions
	// stand as they were; nothing is suspended twice.
	again, err := m.Contain(r.ctx, in.ID)
	if err != nil || len(again.Suspended) != 0 {
		t.Fatalf("second contain: suspended %v, %v; want none suspended again", tokenNames(again.Suspended), err)
	}
	if got := r.led.of("token.suspend"); len(got) != 1 {
		t.Errorf("%d token.suspend entries after a second contain, want 1", len(got))
	}
	if again, err := r.db.Lockouts(r.ctx); err != nil || len(again) != 1 || again[0] != los[0] {
		t.Errorf("lockouts after a second contain: %+v (%v), want %+v as it was", again, err, los)
	}
}

func TestManagerContainRefusesRootAndUnknown(t *testing.T) {
	tests := []struct {
		name string
		uid  *uint32
		user string
		want string
	}{
		{"root", u32(0), "root", "incident 1: its principal is root (uid 0), which cannot be locked out; stop its processes by hand"},
		{"unknown", nil, "", "incident 1: its principal is unknown, which cannot be locked out; stop its processes by hand"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			in := r.openIncident(tt.uid, tt.user, nil, "canary")
			r.token("root-nb", u32(0))
			_, err := r.manager().Contain(r.ctx, in.ID)
			if !errors.Is(err, ErrCannotLockOut) || err.Error() != tt.want {
				t.Fatalf("contain: %v, want ErrCannotLockOut: %q", err, tt.want)
			}
			if got := r.led.kinds(); len(got) != 0 {
				t.Errorf("ledger entries %v, want none", got)
			}
			if los, err := r.db.Lockouts(r.ctx); err != nil || len(los) != 0 {
				t.Errorf("lockouts %+v (%v), want none", los, err)
			}
			if got := r.suspendedTokens(); len(got) != 0 {
				t.Errorf("suspended tokens %v", got)
			}
			if got := r.only(); got.State != catalog.IncidentOpen {
				t.Errorf("state %s, want open", got.State)
			}
		})
	}
}

func TestManagerAnswersNoIncident(t *testing.T) {
	r := newRig(t)
	m := r.manager()
	for name, op := range map[string]func() error{
		"Incident":          func() error { _, err := m.Incident(r.ctx, 9); return err },
		"Contain":           func() error { _, err := m.Contain(r.ctx, 9); return err },
		"Recover":           func() error { _, err := m.Recover(r.ctx, 9, false); return err },
		"Recover --restore": func() error { _, err := m.Recover(r.ctx, 9, true); return err },
		"FalsePositive":     func() error { _, err := m.FalsePositive(r.ctx, 9); return err },
	} {
		err := op()
		if !errors.Is(err, ErrNoIncident) || !errors.Is(err, catalog.ErrNoIncident) || err.Error() != "no incident 9 (see 'custody incidents list')" {
			t.Errorf("%s: %v, want ErrNoIncident with the message for people", name, err)
		}
	}
	if got := r.led.kinds(); len(got) != 0 {
		t.Errorf("ledger entries %v, want none", got)
	}
}

func TestManagerReleaseLockoutResumesTokens(t *testing.T) {
	r := newRig(t)
	in := r.openIncident(u32(1001), "mallory", nil, "entropy")
	a := r.token("mallory-nb", u32(1001))
	m := r.manager()
	if _, err := m.Contain(r.ctx, in.ID); err != nil {
		t.Fatal(err)
	}
	l, err := m.ReleaseLockout(r.ctx, 1001)
	if err != nil {
		t.Fatal(err)
	}
	if l.UID != 1001 || l.Incident != in.ID {
		t.Errorf("released %+v, want uid 1001 of incident %d", l, in.ID)
	}
	if los, err := r.db.Lockouts(r.ctx); err != nil || len(los) != 0 {
		t.Errorf("lockouts %+v (%v), want none", los, err)
	}
	if got := r.suspendedTokens(); len(got) != 0 {
		t.Errorf("still suspended: %v", got)
	}
	if got := r.led.kinds("lockout", "token.suspend", "gate.close", "incident.contain"); !slices.Equal(got, []string{"lockout.release", "token.resume"}) {
		t.Fatalf("ledger after the release %v, want lockout.release token.resume", got)
	}
	id := fmt.Sprint(in.ID)
	if e := r.led.of("lockout.release")[0]; !maps.Equal(e.Detail, map[string]string{"uid": "1001", "incident": id}) {
		t.Errorf("lockout.release detail %v", e.Detail)
	}
	if e := r.led.of("token.resume")[0]; !maps.Equal(e.Detail, map[string]string{"uid": "1001", "incident": id, "tokens": a.ID}) {
		t.Errorf("token.resume detail %v", e.Detail)
	}
	// The gate is another step.
	if gates, err := r.db.Gates(r.ctx, false); err != nil || len(gates) != 1 {
		t.Errorf("closed gates %+v (%v), want the incident's still closed", gates, err)
	}

	_, err = m.ReleaseLockout(r.ctx, 1001)
	if !errors.Is(err, ErrNotLockedOut) || err.Error() != "uid 1001 is not locked out (see 'custody lockouts list')" {
		t.Errorf("second release: %v, want ErrNotLockedOut with the message for people", err)
	}
	if got := r.led.of("lockout.release"); len(got) != 1 {
		t.Errorf("%d lockout.release entries, want 1: a refused release is not recorded", len(got))
	}
}

// A uid not locked out has no suspended tokens: a release finds and lifts
// what an interrupted one left.
func TestManagerReleaseLiftsSuspensionLeftWithoutLockout(t *testing.T) {
	r := newRig(t)
	a := r.token("mallory-nb", u32(1001))
	if _, err := r.db.SuspendTokensOf(r.ctx, 1001, time.Now(), true); err != nil {
		t.Fatal(err)
	}
	_, err := r.manager().ReleaseLockout(r.ctx, 1001)
	if !errors.Is(err, ErrNotLockedOut) {
		t.Fatalf("release: %v, want ErrNotLockedOut", err)
	}
	if got := r.suspendedTokens(); len(got) != 0 {
		t.Errorf("still suspended: %v", got)
	}
	if got := r.led.of("token.resume"); len(got) != 1 || got[0].Detail["tokens"] != a.ID || got[0].Detail["incident"] != "" {
		t.Errorf("token.resume entries %+v, want one for %s", got, a.ID)
	}
}

func TestManagerFailsWhenTheLedgerDoes(t *testing.T) {
	for _, kind := range []string{"lockout", "token.suspend", "gate.close", "incident.contain"} {
		t.Run(kind, func(t *testing.T) {
			r := newRig(t)
			in := r.openIncident(u32(1001), "mallory", nil, "entropy")
			r.token("mallory-nb", u32(1001))
			_, err := r.manager(kind).Contain(r.ctx, in.ID)
			if err == nil || !strings.Contains(err.Error(), kind+" succeeded but was not recorded") {
				t.Fatalf("contain: %v, want the unrecorded %s", err, kind)
			}
		})
	}
}

func TestManagerRecoverRestoresTheIncidentsFiles(t *testing.T) {
	r := newRig(t)
	root := r.sets[0].Path
	testkit.WriteFiles(t, root, map[string][]byte{"a.txt": []byte("alpha"), "b.txt": []byte("bravo")})
	ver := vaulttest.Snapshot(t, r.v, "data", root)
	testkit.WriteFiles(t, root, map[string][]byte{"a.txt": []byte("ENCRYPTED alpha"), "b.txt": []byte("bravo, edited by its owner")})
	in := r.openIncident(u32(1001), "mallory", map[string]string{"data": ver.ID.String()}, "entropy")
	if err := r.db.AddIncidentFiles(r.ctx, in.ID, []catalog.IncidentFile{{Path: filepath.Join(root, "a.txt"), Dataset: "data", First: t0, Kinds: "modify"}}); err != nil {
		t.Fatal(err)
	}

	res, err := r.manager().Recover(r.ctx, in.ID, true)
	if err != nil {
		t.Fatal(err)
	}
	if res.Incident.State != catalog.IncidentRecovered || res.Restore == nil || len(res.Restore.Restored) != 1 || len(res.Restore.Quarantined) != 1 {
		t.Fatalf("recovery %+v, want recovered with a.txt restored and its damaged copy quarantined", res)
	}
	for rel, want := range map[string]string{"a.txt": "alpha", "b.txt": "bravo, edited by its owner"} {
		if got := content(t, filepath.Join(root, rel)); got != want {
			t.Errorf("%s holds %q, want %q", rel, got, want)
		}
	}
	entries := r.led.of("incident.recover")
	want := map[string]string{"incident": fmt.Sprint(in.ID), "restored": "1", "quarantined": "1", "quarantine": res.Restore.Quarantine}
	if len(entries) != 1 || entries[0].Outcome != "ok" || !maps.Equal(entries[0].Detail, want) {
		t.Errorf("incident.recover entries %+v, want one with %v", entries, want)
	}
}

func TestManagerRecoverRecordsAFailedRestore(t *testing.T) {
	r := newRig(t)
	in := r.openIncident(u32(1001), "mallory", nil, "entropy") // no recovery point
	if err := r.db.AddIncidentFiles(r.ctx, in.ID, []catalog.IncidentFile{{Path: r.abs("readme.txt"), Dataset: "data", First: t0, Kinds: "modify"}}); err != nil {
		t.Fatal(err)
	}
	res, err := r.manager().Recover(r.ctx, in.ID, true)
	if err == nil || !strings.Contains(err.Error(), "has no recovery point") {
		t.Fatalf("recover: %v, want no recovery point", err)
	}
	if res.Restore != nil {
		t.Errorf("a failed restore's result: %+v", res.Restore)
	}
	if got := r.led.kinds(); !slices.Equal(got, []string{"incident.restore"}) {
		t.Fatalf("ledger %v, want the failed incident.restore only", got)
	}
	if e := r.led.of("incident.restore")[0]; !strings.HasPrefix(e.Outcome, "failed: ") {
		t.Errorf("incident.restore outcome %q", e.Outcome)
	}
	if got := r.only(); got.State != catalog.IncidentOpen {
		t.Errorf("state %s, want open", got.State)
	}

	// Without --restore it is only marked.
	res, err = r.manager().Recover(r.ctx, in.ID, false)
	if err != nil || res.Incident.State != catalog.IncidentRecovered || res.Restore != nil {
		t.Fatalf("recover without restore: %+v %v", res, err)
	}
	if e := r.led.of("incident.recover"); len(e) != 1 || !maps.Equal(e[0].Detail, map[string]string{"incident": fmt.Sprint(in.ID)}) {
		t.Errorf("incident.recover entries %+v", e)
	}
}

func TestManagerFalsePositiveRaisesAllowances(t *testing.T) {
	r := newRig(t)
	in := r.openIncident(u32(1001), "mallory", nil, "entropy", "entropy", "extension")
	got, err := r.manager().FalsePositive(r.ctx, in.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != catalog.IncidentFalsePositive || got.User != "mallory" {
		t.Errorf("incident %+v, want mallory's, a false positive", got)
	}
	for d, want := range map[string]int{"entropy": 4, "extension": 2, "canary": 0} {
		if n, err := r.db.Allowance(r.ctx, u32(1001), d); err != nil || n != want {
			t.Errorf("allowance of %s: %d (%v), want %d", d, n, err, want)
		}
	}
	if e := r.led.of("incident.false-positive"); len(e) != 1 || e[0].Detail["incident"] != fmt.Sprint(in.ID) {
		t.Errorf("incident.false-positive entries %+v", e)
	}
}

// The guard's own lockout suspends the principal's API tokens as well.
func TestGuardLockoutSuspendsThePrincipalsTokens(t *testing.T) {
	r := newRig(t)
	a := r.token("mallory-nb", u32(1001))
	r.token("bob-nb", u32(1002))
	g := r.guard(r.lock, r.stop.stop, Options{}, map[string]map[string]detect.Strength{"canary": {"c": detect.Decisive}})
	r.run(g, r.ev(0, watch.Delete, "c", mallory))
	if got := r.suspendedTokens(); !slices.Equal(got, []string{"mallory-nb"}) {
		t.Errorf("suspended tokens %v, want mallory's", got)
	}
	entries := r.led.of("token.suspend")
	want := map[string]string{"incident": "1", "uid": "1001", "tokens": a.ID}
	if len(entries) != 1 || entries[0].Outcome != "ok" || entries[0].Actor.User != "custody-guard" || !maps.Equal(entries[0].Detail, want) {
		t.Errorf("token.suspend entries %+v, want one by custody-guard with %v", entries, want)
	}
	kinds := r.led.kinds("alert", "snapshot", "gate.close")
	if wantKinds := []string{"incident.open", "lockout", "process.freeze", "token.suspend", "incident.contain"}; !slices.Equal(kinds, wantKinds) {
		t.Errorf("ledger %v, want %v", kinds, wantKinds)
	}
	if got := actionOutcomes(r.only(), "suspend API tokens of uid 1001"); !slices.Equal(got, []string{"ok"}) {
		t.Errorf("token suspension actions %v, want [ok]", got)
	}

	// A failed lockout suspends nothing.
	r2 := newRig(t)
	r2.token("mallory-nb", u32(1001))
	lock := newFakeLocker()
	lock.err = errors.New("fanotify: operation not permitted")
	r2.run(r2.guard(lock, r2.stop.stop, Options{}, map[string]map[string]detect.Strength{"canary": {"c": detect.Decisive}}),
		r2.ev(0, watch.Delete, "c", mallory))
	if got := r2.suspendedTokens(); len(got) != 0 {
		t.Errorf("suspended after a failed lockout: %v", got)
	}
}

func tokenNames(ts []catalog.Token) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Name)
	}
	return out
}
