package guard

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/ledger"
	"github.com/custodyhq/custody/internal/vault"
)

// Errors a Manager's caller branches on (the API answers 404, 404 and
// 409). The errors returned carry a message for people as well.
var (
	// ErrNoIncident: no incident has the id.
	ErrNoIncident = errors.New("no such incident")
	// ErrNotLockedOut: the uid has no active lockout.
	ErrNotLockedOut = errors.New("not locked out")
	// ErrCannotLockOut: the incident's principal is root or unknown.
	ErrCannotLockOut = errors.New("the principal cannot be locked out")
)

// refusal is an error with a message for people that still matches its
// sentinel, and the catalog's error if there was one, with errors.Is.
type refusal struct {
	msg   string
	kind  error
	cause error
}

func (e *refusal) Error() string { return e.msg }

func (e *refusal) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

// Manager performs the people's side of incident handling: contain,
// recover, mark false positive, release a lockout. The CLI and the API
// both use it, so that either way the catalog changes and the ledger
// entries are the same.
type Manager struct {
	Vault *vault.Vault
	DB    *catalog.DB
	// Record appends e to the audit ledger with the caller's actor filled
	// in and err's outcome; it returns err when err != nil, or an error
	// when recording failed (an action missing from the ledger is not a
	// success). The Manager sets e's Kind, Detail and Time.
	Record func(ctx context.Context, e ledger.Entry, err error) error
	// By is who acts, for the catalog's "by" columns: an OS user name, or
	// "token:NAME".
	By string
}

// ContainResult is what Contain did.
type ContainResult struct {
	Incident  catalog.Incident // now contained
	Gate      catalog.Gate     // closed for the whole vault
	Suspended []catalog.Token  // the principal's API tokens suspended now (not those suspended before)
}

// Recovery is what Recover did. (RecoverResult is Restore's.)
type Recovery struct {
	Incident catalog.Incident // now recovered; zero when Recover failed before the change
	Restore  *RecoverResult   // with restore, once it succeeded: the files put back and quarantined; nil otherwise
}

// PrincipalLabel names an incident's principal for people: "alice (uid
// 1000)", "uid 1000" or "unknown".
func PrincipalLabel(uid *uint32, user string) string {
	switch {
	case user != "" && uid != nil:
		return fmt.Sprintf("%s (uid %d)", user, *uid)
	case uid != nil:
		return fmt.Sprintf("uid %d", *uid)
	}
	return "unknown"
}

// Contain locks incident id's principal out (the catalog's lockout, which
// a running guard enforces, and its API tokens suspended), closes the
// gate for the whole vault and marks the incident contained. Each step is
// recorded; a failed step ends it, and running it again is safe.
func (m *Manager) Contain(ctx context.Context, id int64) (ContainResult, error) {
	in, err := m.Incident(ctx, id)
	if err != nil {
		return ContainResult{}, err
	}
	if in.UID == nil || *in.UID == 0 {
		return ContainResult{}, &refusal{kind: ErrCannotLockOut,
			msg: fmt.Sprintf("incident %d: its principal is %s, which cannot be locked out; stop its processes by hand", id, PrincipalLabel(in.UID, in.User))}
	}
	uid := *in.UID
	incident := strconv.FormatInt(id, 10)
	if err := m.DB.AddLockout(ctx, catalog.Lockout{UID: uid, User: in.User, Incident: id, Since: time.Now().UTC(), By: m.By}); err != nil {
		return ContainResult{}, err
	}
	if err := m.record(ctx, "lockout", map[string]string{"incident": incident, "uid": strconv.FormatUint(uint64(uid), 10)}, nil); err != nil {
		return ContainResult{}, err
	}
	var res ContainResult
	if res.Suspended, err = m.suspendTokens(ctx, uid, id, true); err != nil {
		return res, err
	}
	res.Gate, err = m.DB.CloseGate(ctx, "", fmt.Sprintf("incident %d contained by %s", id, m.By), m.By, time.Now().UTC())
	if err := m.record(ctx, "gate.close", map[string]string{"incident": incident, "gate": res.Gate.ID}, err); err != nil {
		return res, err
	}
	res.Incident, err = m.transition(ctx, id, catalog.IncidentContained, nil)
	return res, err
}

// Recover marks incident id recovered. With restore it first puts back
// the files the incident touched from its recovery points (see Restore);
// if that fails, the failure is recorded and the incident stays as it
// was. The lockout and the gate stay until released. When marking the
// incident fails after a restore, the result still says what the
// restore did.
func (m *Manager) Recover(ctx context.Context, id int64, restore bool) (Recovery, error) {
	in, err := m.Incident(ctx, id)
	if err != nil {
		return Recovery{}, err
	}
	var res Recovery
	detail := map[string]string{}
	if restore {
		files, err := m.DB.IncidentFiles(ctx, id)
		if err != nil {
			return res, err
		}
		done, rerr := Restore(ctx, m.Vault, in, files)
		if done != nil {
			detail["restored"] = strconv.Itoa(len(done.Restored))
			detail["quarantined"] = strconv.Itoa(len(done.Quarantined))
			detail["quarantine"] = done.Quarantine
		}
		if rerr != nil {
			// How far it got is in the entry.
			return res, m.record(ctx, "incident.restore", detail, rerr)
		}
		res.Restore = done
	}
	res.Incident, err = m.transition(ctx, id, catalog.IncidentRecovered, detail)
	return res, err
}

// FalsePositive marks incident id a false positive, and raises what its
// principal may do before the guard scores it: twice as much of what
// fired counts as normal for it from now on.
func (m *Manager) FalsePositive(ctx context.Context, id int64) (catalog.Incident, error) {
	in, err := m.Incident(ctx, id)
	if err != nil {
		return catalog.Incident{}, err
	}
	per := map[string]int{}
	for _, s := range in.Signals {
		per[s.Detector]++
	}
	for _, d := range sortedKeys(per) {
		if err := m.DB.RaiseAllowance(ctx, in.UID, d, 2*per[d]); err != nil {
			return catalog.Incident{}, err
		}
	}
	return m.transition(ctx, id, catalog.IncidentFalsePositive, nil)
}

// ReleaseLockout ends uid's lockout (a running guard lifts it within a
// second) and lifts the suspension of its API tokens; the gate stays as
// it is. A uid not locked out is ErrNotLockedOut, after the suspension of
// its tokens is lifted if an earlier release could not.
func (m *Manager) ReleaseLockout(ctx context.Context, uid uint32) (catalog.Lockout, error) {
	l, err := m.DB.ReleaseLockout(ctx, uid, m.By, time.Now().UTC())
	if errors.Is(err, catalog.ErrNoLockout) {
		// A uid not locked out has no suspended tokens: lift what an
		// interrupted release, or a guard's lockout released as it was
		// made, left.
		if _, rerr := m.suspendTokens(ctx, uid, 0, false); rerr != nil {
			return catalog.Lockout{}, rerr
		}
		return catalog.Lockout{}, &refusal{kind: ErrNotLockedOut, cause: err,
			msg: fmt.Sprintf("uid %d is not locked out (see 'custody lockouts list')", uid)}
	}
	detail := map[string]string{"uid": strconv.FormatUint(uint64(uid), 10)}
	if err == nil {
		detail["incident"] = strconv.FormatInt(l.Incident, 10)
	}
	if err := m.record(ctx, "lockout.release", detail, err); err != nil {
		return catalog.Lockout{}, err
	}
	if _, err := m.suspendTokens(ctx, uid, l.Incident, false); err != nil {
		return l, fmt.Errorf("uid %d released, but its API tokens are still suspended: %w; run 'custody lockouts release %d' again to lift that", uid, err, uid)
	}
	return l, nil
}

// Incident reads incident id; ErrNoIncident when there is none.
func (m *Manager) Incident(ctx context.Context, id int64) (catalog.Incident, error) {
	in, err := m.DB.Incident(ctx, id)
	return in, noIncident(id, err)
}

// noIncident gives catalog.ErrNoIncident its message for people.
func noIncident(id int64, err error) error {
	if errors.Is(err, catalog.ErrNoIncident) {
		return &refusal{kind: ErrNoIncident, cause: err, msg: fmt.Sprintf("no incident %d (see 'custody incidents list')", id)}
	}
	return err
}

// transition moves incident id to state, as an action by m.By, and
// records it ("incident.contain", ".recover" or ".false-positive") with
// detail and the incident's id.
func (m *Manager) transition(ctx context.Context, id int64, state string, detail map[string]string) (catalog.Incident, error) {
	in, err := m.DB.UpdateIncident(ctx, id, func(c *catalog.Incident) error {
		c.State = state
		c.Actions = append(c.Actions, catalog.IncidentAction{Time: time.Now().UTC(), Action: "state " + state, Outcome: "ok", By: m.By})
		return nil
	})
	if detail == nil {
		detail = map[string]string{}
	}
	detail["incident"] = strconv.FormatInt(id, 10)
	kind := map[string]string{catalog.IncidentContained: "contain", catalog.IncidentRecovered: "recover", catalog.IncidentFalsePositive: "false-positive"}[state]
	if err := m.record(ctx, "incident."+kind, detail, err); err != nil {
		return in, noIncident(id, err)
	}
	return in, nil
}

// suspendTokens suspends (or resumes) uid's API tokens and records what
// changed, if anything did.
func (m *Manager) suspendTokens(ctx context.Context, uid uint32, incident int64, suspend bool) ([]catalog.Token, error) {
	ts, err := m.DB.SuspendTokensOf(ctx, uid, time.Now().UTC(), suspend)
	if err == nil && len(ts) == 0 {
		return nil, nil
	}
	e := tokenEntry(uid, incident, suspend, ts)
	return ts, m.record(ctx, e.Kind, e.Detail, err)
}

// suspendTokens suspends the API tokens of uid, which inc's lockout just
// locked out, and records it as the guard's action. Like the guard's
// other responses, a failure is an outcome; only a failure to record ends
// Run.
func (g *Guard) suspendTokens(ctx context.Context, inc *liveIncident, uid uint32) error {
	ts, err := g.db.SuspendTokensOf(ctx, uid, time.Now().UTC(), true)
	if err == nil && len(ts) == 0 {
		return nil
	}
	outcome := "ok"
	if err != nil {
		outcome = "failed: " + err.Error()
	}
	e := tokenEntry(uid, inc.id, true, ts)
	g.action(ctx, inc, "suspend API tokens of uid "+e.Detail["uid"], outcome)
	return g.record(ctx, e.Kind, "", "", outcome, e.Detail)
}

// tokenEntry is the ledger entry for suspending (or resuming) uid's
// tokens ts: "token.suspend" or "token.resume", with the uid, the
// incident when there is one, and the token ids (never a secret).
func tokenEntry(uid uint32, incident int64, suspend bool, ts []catalog.Token) ledger.Entry {
	ids := make([]string, len(ts))
	for i, t := range ts {
		ids[i] = t.ID
	}
	e := ledger.Entry{Kind: "token.resume", Detail: map[string]string{"uid": strconv.FormatUint(uint64(uid), 10), "tokens": strings.Join(ids, ",")}}
	if suspend {
		e.Kind = "token.suspend"
	}
	if incident > 0 {
		e.Detail["incident"] = strconv.FormatInt(incident, 10)
	}
	return e
}

func (m *Manager) record(ctx context.Context, kind string, detail map[string]string, err error) error {
	return m.Record(ctx, ledger.Entry{Time: time.Now().UTC(), Kind: kind, Detail: detail}, err)
}
