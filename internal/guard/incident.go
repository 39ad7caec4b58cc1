package guard

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/guard/detect"
	"github.com/custodyhq/custody/internal/snapshot"
	"github.com/custodyhq/custody/internal/watch"
)

// touchRing keeps a principal's recent file events, so that an incident
// opened by its fifth damaged file also lists the first four.
type touchRing struct {
	items []touched
	next  int
	full  bool
}

type touched struct {
	file catalog.IncidentFile
	pid  int
}

const touchRingSize = 8192

func (r *touchRing) add(t touched) {
	if len(r.items) < touchRingSize {
		r.items = append(r.items, t)
		return
	}
	r.items[r.next] = t
	r.next = (r.next + 1) % touchRingSize
	r.full = true
}

// since is what was touched at or after t, oldest first.
func (r *touchRing) since(t time.Time) []touched {
	var out []touched
	for i := range r.items {
		it := r.items[(r.next+i)%len(r.items)]
		if !it.file.First.Before(t) {
			out = append(out, it)
		}
	}
	return out
}

func kindName(k watch.Kind) string {
	switch k {
	case watch.Create, watch.Delete, watch.Rename, watch.Attrib:
		return string(k)
	}
	return "modify"
}

// touch remembers e for k, and adds it to k's open incident.
func (g *Guard) touch(k principalKey, dataset string, e watch.Event) {
	f := catalog.IncidentFile{Path: e.Path, Dataset: dataset, First: e.Time, Kinds: kindName(e.Kind), OldPath: e.OldPath}
	r := g.touches[k]
	if r == nil {
		r = &touchRing{}
		g.touches[k] = r
	}
	r.add(touched{file: f, pid: e.Principal.PID})
	if inc := g.incidents[k]; inc != nil {
		inc.addFile(f)
		if e.Principal.PID > 0 {
			inc.pids[e.Principal.PID] = true
		}
	}
}

func (inc *liveIncident) addFile(f catalog.IncidentFile) {
	inc.datasets[f.Dataset] = true
	if old, ok := inc.files[f.Path]; ok {
		if strings.Contains(","+old.Kinds+",", ","+f.Kinds+",") {
			return
		}
		f.First = old.First
		f.Kinds = old.Kinds + "," + f.Kinds
	}
	inc.files[f.Path] = f
	inc.pending = append(inc.pending, f)
}

// open opens an incident for k.
func (g *Guard) open(ctx context.Context, k principalKey, p watch.Principal, sev Severity) (*liveIncident, error) {
	sigs := g.score.recent(k)
	first := sigs[0].Time
	for _, s := range sigs {
		if s.Time.Before(first) {
			first = s.Time
		}
	}
	inc := &liveIncident{severity: sev, done: map[string]bool{}, pids: map[int]bool{},
		files: map[string]catalog.IncidentFile{}, datasets: map[string]bool{}, first: first}
	// The incident starts at its first signal; what the principal touched
	// a little before it in the datasets the signals are about is evidence
	// too (the detectors need a file or two to be sure). Its work in other
	// datasets is not, until it is signalled or the incident is open.
	signalled := map[string]bool{}
	for _, s := range sigs {
		if d := g.datasetOfPath(s.Path); d != nil {
			signalled[d.Name] = true
			inc.datasets[d.Name] = true
		}
	}
	if r := g.touches[k]; r != nil {
		for _, t := range r.since(first.Add(-10 * time.Second)) {
			if !signalled[t.file.Dataset] {
				continue
			}
			inc.addFile(t.file)
			if t.pid > 0 {
				inc.pids[t.pid] = true
			}
		}
	}
	inc.since, inc.located = first, map[string]bool{}
	for _, f := range inc.files {
		if f.First.Before(inc.since) {
			inc.since = f.First
		}
	}
	rec := catalog.Incident{
		State: catalog.IncidentOpen, Severity: sev.String(), UID: p.UID, User: p.User, Exe: p.Exe,
		Datasets: sortedKeys(inc.datasets), FirstEvent: first, Recovery: map[string]string{},
		Signals: incidentSignals(sigs),
	}
	for _, ds := range rec.Datasets {
		inc.located[ds] = true
		if id := g.recoveryPoint(ctx, ds, inc.since); id != "" {
			rec.Recovery[ds] = id
		}
	}
	opened, err := g.db.OpenIncident(ctx, rec)
	if err != nil {
		return nil, fmt.Errorf("guard: opening an incident: %w", err)
	}
	inc.id = opened.ID
	g.incidents[k] = inc
	detail := map[string]string{"incident": strconv.FormatInt(inc.id, 10), "severity": sev.String(),
		"principal": k.String(), "signals": summary(sigs)}
	for ds, v := range rec.Recovery {
		detail["recovery_point."+ds] = v
	}
	if err := g.record(ctx, "incident.open", strings.Join(rec.Datasets, ","), "", "ok", detail); err != nil {
		return nil, err
	}
	g.log.Warn("guard: incident opened", "incident", inc.id, "severity", sev.String(), "principal", k.String(), "signals", summary(sigs))
	g.alert(ctx, inc, "opened", rec)
	return inc, nil
}

// recoveryPoint is the id of the dataset's last version before t.
func (g *Guard) recoveryPoint(ctx context.Context, dataset string, t time.Time) string {
	vs, err := g.db.Versions(ctx, dataset)
	if err != nil {
		g.log.Warn("guard: reading versions for the recovery point", "dataset", dataset, "err", err)
		return ""
	}
	best := ""
	var bt time.Time
	for _, v := range vs {
		if v.Time.Before(t) && (best == "" || v.Time.After(bt)) {
			best, bt = v.ID, v.Time
		}
	}
	return best
}

// grow adds signals to an open incident and raises its severity. The
// signals are stored with the next flush (every second), not one update
// per event: a fast attack brings thousands.
func (g *Guard) grow(ctx context.Context, inc *liveIncident, sev Severity, sigs []detect.Signal) error {
	inc.signals = append(inc.signals, incidentSignals(sigs)...)
	if sev <= inc.severity {
		return nil
	}
	inc.severity = sev
	if err := g.flushIncident(ctx, inc); err != nil {
		return err
	}
	return g.record(ctx, "incident.severity", "", "", "ok", map[string]string{
		"incident": strconv.FormatInt(inc.id, 10), "severity": sev.String()})
}

// flushIncident stores inc's new signals, datasets and severity.
func (g *Guard) flushIncident(ctx context.Context, inc *liveIncident) error {
	rps := map[string]string{}
	for _, ds := range sortedKeys(inc.datasets) {
		if !inc.located[ds] {
			if id := g.recoveryPoint(ctx, ds, inc.since); id != "" {
				rps[ds] = id
			}
		}
	}
	_, err := g.db.UpdateIncident(ctx, inc.id, func(c *catalog.Incident) error {
		for ds, id := range rps {
			if _, ok := c.Recovery[ds]; !ok {
				if c.Recovery == nil {
					c.Recovery = map[string]string{}
				}
				c.Recovery[ds] = id
			}
		}
		if ParseSeverity(c.Severity) < inc.severity && c.State == catalog.IncidentOpen { // fixed once contained
			c.Severity = inc.severity.String()
		}
		c.Signals = append(c.Signals, inc.signals...)
		c.Datasets = mergeSorted(c.Datasets, sortedKeys(inc.datasets))
		return nil
	})
	if err != nil {
		return fmt.Errorf("guard: updating incident %d: %w", inc.id, err)
	}
	inc.signals = inc.signals[:0]
	for ds := range inc.datasets {
		inc.located[ds] = true
	}
	return nil
}

// respond takes the responses inc's severity calls for, each once:
// lockout first (it stops the damage), then the gate, then the snapshot
// and alerts, which take longer and run in the background.
func (g *Guard) respond(ctx context.Context, k principalKey, p watch.Principal, inc *liveIncident) error {
	pol := g.opts.Policy
	id := strconv.FormatInt(inc.id, 10)
	if inc.severity >= pol.Lockout && !inc.done["lockout"] {
		inc.done["lockout"] = true
		if err := g.lockOut(ctx, k, p, inc); err != nil {
			return err
		}
	}
	if inc.severity >= pol.Gate && !inc.done["gate"] {
		inc.done["gate"] = true
		gate, err := g.db.CloseGate(ctx, "", "incident "+id+": "+inc.severity.String()+" activity by "+k.String(), "custody-guard", time.Now().UTC())
		outcome := "ok"
		if err != nil {
			outcome = "failed: " + err.Error()
		}
		g.action(ctx, inc, "gate closed "+gate.ID, outcome)
		if err := g.record(ctx, "gate.close", "", "", outcome, map[string]string{"incident": id, "gate": gate.ID}); err != nil {
			return err
		}
	}
	if inc.severity >= pol.Snapshot && !inc.done["snapshot"] {
		inc.done["snapshot"] = true
		for _, ds := range sortedKeys(inc.datasets) {
			d := g.datasetByName(ds)
			if d == nil {
				continue
			}
			g.bg.Add(1)
			go func() {
				defer g.bg.Done()
				g.snapshot(context.WithoutCancel(ctx), inc.id, *d)
			}()
		}
	}
	return nil
}

// lockOut locks k out of the protected trees and stops the processes it
// was seen acting through.
func (g *Guard) lockOut(ctx context.Context, k principalKey, p watch.Principal, inc *liveIncident) error {
	id := strconv.FormatInt(inc.id, 10)
	if !k.known || k.uid == 0 {
		why := "the principal is unknown (no attribution: inotify?)"
		if k.known {
			why = "root cannot be locked out"
		}
		g.action(ctx, inc, "lockout "+k.String(), "skipped: "+why)
		return g.record(ctx, "lockout", "", "", "skipped: "+why, map[string]string{"incident": id, "principal": k.String()})
	}
	outcome := "ok"
	if g.lock == nil {
		outcome = "failed: " + errNoLocker.Error()
	} else if err := g.lock.Lock(k.uid); err != nil {
		outcome = "failed: " + err.Error()
	}
	if outcome == "ok" {
		if err := g.db.AddLockout(ctx, catalog.Lockout{UID: k.uid, User: p.User, Incident: inc.id, Since: time.Now().UTC(), By: "custody-guard"}); err != nil {
			outcome = "failed: " + err.Error()
		}
	}
	g.action(ctx, inc, "lockout "+k.String(), outcome)
	if err := g.record(ctx, "lockout", "", "", outcome, map[string]string{"incident": id, "uid": strconv.FormatUint(uint64(k.uid), 10), "user": p.User}); err != nil {
		return err
	}
	if g.opts.Policy.Process != "none" && g.stop != nil {
		kill := g.opts.Policy.Process == "kill"
		for _, pid := range sortedInts(inc.pids) {
			out := "ok"
			if err := g.stop(pid, k.uid, kill); err != nil {
				out = "failed: " + err.Error()
			}
			what := "freeze"
			if kill {
				what = "kill"
			}
			g.action(ctx, inc, what+" pid "+strconv.Itoa(pid), out)
			if err := g.record(ctx, "process."+what, "", "", out, map[string]string{"incident": id, "pid": strconv.Itoa(pid)}); err != nil {
				return err
			}
		}
	}
	if outcome == "ok" {
		if err := g.suspendTokens(ctx, inc, k.uid); err != nil {
			return err
		}
		inc.locked = true
		_, err := g.db.UpdateIncident(ctx, inc.id, func(c *catalog.Incident) error {
			if c.State == catalog.IncidentOpen {
				c.State = catalog.IncidentContained
			}
			return nil
		})
		if err != nil {
			g.log.Warn("guard: marking the incident contained", "incident", inc.id, "err", err)
		} else if err := g.record(ctx, "incident.contain", "", "", "ok", map[string]string{"incident": id}); err != nil {
			return err
		}
	}
	return nil
}

// snapshot takes a version of d after an incident: the damaged state,
// kept for forensics; the recovery point is the version before.
func (g *Guard) snapshot(ctx context.Context, incident int64, d Dataset) {
	id := strconv.FormatInt(incident, 10)
	taken, err := snapshot.Take(ctx, g.v, d.Name, "", "incident "+id+": state when the guard responded", d.Path, snapshot.ArchiveOptions{})
	outcome, version := "ok", ""
	if err != nil {
		outcome = "failed: " + err.Error()
	} else {
		version = taken.Version.ID.String()
		if err := g.db.PutVersion(ctx, catalog.VersionOf(taken.Version)); err != nil {
			g.log.Warn("guard: catalog index not updated; run `custody catalog sync`", "err", err)
		}
	}
	g.action(ctx, &liveIncident{id: incident}, "snapshot "+d.Name+" "+version, outcome)
	if err := g.record(ctx, "snapshot", d.Name, d.Path, outcome, map[string]string{"incident": id, "version": version}); err != nil {
		g.log.Error("guard: recording a snapshot", "err", err)
	}
}

// action appends an action to the incident's record.
func (g *Guard) action(ctx context.Context, inc *liveIncident, what, outcome string) {
	_, err := g.db.UpdateIncident(ctx, inc.id, func(c *catalog.Incident) error {
		c.Actions = append(c.Actions, catalog.IncidentAction{Time: time.Now().UTC(), Action: what, Outcome: outcome, By: "custody-guard"})
		return nil
	})
	if err != nil {
		g.log.Warn("guard: recording an action on the incident", "incident", inc.id, "action", what, "err", err)
	}
}

// flushFiles stores the files open incidents touched since the last call.
func (g *Guard) flushFiles(ctx context.Context) {
	for _, inc := range g.incidents {
		if len(inc.signals) > 0 || len(inc.datasets) > len(inc.located) {
			if err := g.flushIncident(ctx, inc); err != nil {
				g.log.Warn("guard: storing signals", "incident", inc.id, "err", err)
			}
		}
		if len(inc.pending) == 0 {
			continue
		}
		if err := g.db.AddIncidentFiles(ctx, inc.id, inc.pending); err != nil {
			g.log.Warn("guard: storing the files of an incident", "incident", inc.id, "err", err)
			continue
		}
		inc.pending = inc.pending[:0]
	}
}

// syncLockouts makes the enforced lockouts those the catalog lists.
func (g *Guard) syncLockouts(ctx context.Context) error {
	if g.lock == nil {
		return nil
	}
	// Idle, nothing changes the catalog: skip reading it (most of an
	// idle daemon's CPU went to this query).
	mark, ok := g.db.ChangeMark()
	if ok && mark == g.lockoutMark {
		return nil
	}
	want, err := g.db.Lockouts(ctx)
	if err != nil {
		return err
	}
	wanted := map[uint32]bool{}
	synced := true // else try again at the next tick, changed catalog or not
	for _, l := range want {
		wanted[l.UID] = true
		if !slices.Contains(g.lock.Locked(), l.UID) {
			if err := g.lock.Lock(l.UID); err != nil {
				g.log.Warn("guard: applying a lockout", "uid", l.UID, "err", err)
				synced = false
			}
		}
	}
	for _, uid := range g.lock.Locked() {
		if !wanted[uid] {
			if err := g.lock.Release(uid); err != nil {
				g.log.Warn("guard: releasing a lockout", "uid", uid, "err", err)
				synced = false
			}
		}
	}
	if synced {
		g.lockoutMark = mark
	}
	// A released principal's next incident is a new one.
	for k, inc := range g.incidents {
		if k.known && inc.locked && !wanted[k.uid] {
			delete(g.incidents, k)
			g.score.forget(k)
		}
	}
	return nil
}

func (g *Guard) datasetByName(name string) *Dataset {
	for i := range g.opts.Datasets {
		if g.opts.Datasets[i].Name == name {
			return &g.opts.Datasets[i]
		}
	}
	return nil
}

func incidentSignals(sigs []detect.Signal) []catalog.IncidentSignal {
	out := make([]catalog.IncidentSignal, len(sigs))
	for i, s := range sigs {
		out[i] = catalog.IncidentSignal{Detector: s.Detector, Strength: int(s.Strength), Time: s.Time, Path: s.Path, Reason: s.Reason}
	}
	return out
}

// summary counts signals by detector: "randomness×4 extension×1".
func summary(sigs []detect.Signal) string {
	n := map[string]int{}
	for _, s := range sigs {
		n[s.Detector]++
	}
	var parts []string
	for _, d := range sortedKeys(n) {
		parts = append(parts, d+"×"+strconv.Itoa(n[d]))
	}
	return strings.Join(parts, " ")
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sortedInts(m map[int]bool) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}

func mergeSorted(a, b []string) []string {
	out := slices.Concat(a, b)
	sort.Strings(out)
	return slices.Compact(out)
}
