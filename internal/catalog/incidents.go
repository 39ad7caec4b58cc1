package catalog

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
)

// Incident states. An incident opens as open; recovered and
// false-positive are final.
const (
	IncidentOpen          = "open"
	IncidentContained     = "contained"
	IncidentRecovered     = "recovered"
	IncidentFalsePositive = "false-positive"
)

// Incident severities, least first.
const (
	SeverityWarning  = "warning"
	SeverityMajor    = "major"
	SeverityCritical = "critical"
)

// MaxIncidentSignals is how many signals an incident keeps; the rest are
// only counted, in SignalsDropped.
const MaxIncidentSignals = 200

// Incident is what the guard recorded about one suspected attack.
type Incident struct {
	ID             int64
	Opened         time.Time
	Updated        time.Time
	State          string
	Severity       string  // SeverityWarning, SeverityMajor or SeverityCritical; grows only while open
	UID            *uint32 // the principal; nil = unknown
	User           string
	Exe            string
	Datasets       []string          // affected datasets, sorted, unique
	FirstEvent     time.Time         // time of the first malicious event seen
	Recovery       map[string]string // dataset -> recovery point: the last version before FirstEvent
	Signals        []IncidentSignal  // the first MaxIncidentSignals
	SignalsDropped int               // signals seen beyond those
	Actions        []IncidentAction  // what was done, in order; append-only
}

// IncidentSignal is one detector's signal, as the incident keeps it.
type IncidentSignal struct {
	Detector string    `json:"detector"`
	Strength int       `json:"strength"`
	Time     time.Time `json:"time"`
	Path     string    `json:"path"`
	Reason   string    `json:"reason"`
}

// IncidentAction is one thing done about an incident, e.g. Action
// "snapshot raw-images -> 1a2b3c", "lockout uid 1001" or "state contained".
type IncidentAction struct {
	Time    time.Time `json:"time"`
	Action  string    `json:"action"`
	Outcome string    `json:"outcome"`
	By      string    `json:"by"`
}

// ErrNoIncident: no incident has that id.
var ErrNoIncident = errors.New("catalog: no such incident")

// ErrIncidentState: an update asked for a state change that is not
// allowed (see UpdateIncident).
var ErrIncidentState = errors.New("catalog: incident state change not allowed")

// ErrIncidentConflict: an update lost the race with other writers every
// time it tried.
var ErrIncidentConflict = errors.New("catalog: the incident kept changing while it was updated")

// incidentNext lists the states each state may move to.
var incidentNext = map[string][]string{
	IncidentOpen:          {IncidentContained, IncidentRecovered, IncidentFalsePositive},
	IncidentContained:     {IncidentRecovered, IncidentFalsePositive},
	IncidentRecovered:     nil,
	IncidentFalsePositive: nil,
}

var severityRank = map[string]int{SeverityWarning: 1, SeverityMajor: 2, SeverityCritical: 3}

// incidentRetryFor bounds how long a write that races other writers keeps
// trying. Every lost race is another writer's write going in, so only a
// flood of writers to one incident could starve one; a count of tries
// would instead give up sooner the busier the machine (each try takes
// longer, and 10 of them lost on a loaded one).
const incidentRetryFor = 10 * time.Second

// OpenIncident records a new incident in state open and returns it with
// its ID, Opened and Updated assigned.
func (db *DB) OpenIncident(ctx context.Context, inc Incident) (Incident, error) {
	if inc.State == "" {
		inc.State = IncidentOpen
	}
	if inc.State != IncidentOpen {
		return Incident{}, fmt.Errorf("%w: an incident opens in state %s, not %s", ErrIncidentState, IncidentOpen, inc.State)
	}
	now := fromNanos(time.Now().UnixNano())
	inc.ID, inc.Opened, inc.Updated = 0, now, now
	if err := normalizeIncident(&inc); err != nil {
		return Incident{}, fmt.Errorf("catalog: open incident: %w", err)
	}
	cols, err := incidentColumns(inc)
	if err != nil {
		return Incident{}, fmt.Errorf("catalog: open incident: %w", err)
	}
	start := time.Now()
	for attempt := 0; ; attempt++ {
		inc.ID, err = db.insertIncident(ctx, cols)
		if err == nil {
			return inc, nil
		}
		// On PostgreSQL two hosts may pick the same id; one retries.
		if !retryable(err) || time.Since(start) > db.retryFor {
			return Incident{}, fmt.Errorf("catalog: open incident: %w", err)
		}
		if err := backoff(ctx, attempt); err != nil {
			return Incident{}, fmt.Errorf("catalog: open incident: %w", err)
		}
	}
}

func (db *DB) insertIncident(ctx context.Context, cols []any) (int64, error) {
	tx, err := db.db.BeginTx(ctx, nil) // SQLite: BEGIN IMMEDIATE, one writer
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	var id int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) + 1 FROM incidents`).Scan(&id); err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, db.q(`INSERT INTO incidents (id, rev, `+incidentWritten+`)
		VALUES ($1, 1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`), append([]any{id}, cols...)...); err != nil {
		return 0, err
	}
	return id, tx.Commit()
}

// Incident reads one incident, or returns ErrNoIncident.
func (db *DB) Incident(ctx context.Context, id int64) (Incident, error) {
	inc, _, err := db.readIncident(ctx, db.db, id)
	return inc, err
}

// Incidents lists the incidents in any of states (all when none is
// given), newest first.
func (db *DB) Incidents(ctx context.Context, states ...string) ([]Incident, error) {
	query, args := `SELECT `+incidentCols+` FROM incidents`, []any{}
	if len(states) > 0 {
		ph := make([]string, len(states))
		for i, s := range states {
			if _, ok := incidentNext[s]; !ok {
				return nil, fmt.Errorf("catalog: incidents: unknown state %q (open, contained, recovered or false-positive)", s)
			}
			ph[i], args = fmt.Sprintf("$%d", i+1), append(args, s)
		}
		query += ` WHERE state IN (` + strings.Join(ph, ", ") + `)`
	}
	rs, err := db.db.QueryContext(ctx, db.q(query+` ORDER BY opened DESC, id DESC`), args...)
	if err != nil {
		return nil, fmt.Errorf("catalog: incidents: %w", err)
	}
	defer rs.Close()
	var out []Incident
	for rs.Next() {
		inc, _, err := scanIncident(rs)
		if err != nil {
			return nil, fmt.Errorf("catalog: incidents: %w", err)
		}
		out = append(out, inc)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("catalog: incidents: %w", err)
	}
	return out, nil
}

// UpdateIncident reads incident id, lets f change it and writes it back
// in one transaction, if no one else wrote it in between; otherwise it
// reads it again and calls f again, a few times. So f may run more than
// once, and must only change the incident it is given; it should be
// quick, as on SQLite it runs holding the write lock. An error from f
// aborts the update and is returned.
//
// The write is refused with ErrIncidentState when the state moves other
// than open -> contained, open|contained -> recovered or open|contained ->
// false-positive; and refused when the severity drops, changes after the
// incident left open, earlier actions are changed or removed, or the ID
// or Opened changes. Signals beyond MaxIncidentSignals are counted in
// SignalsDropped and dropped. Updated is set to now.
func (db *DB) UpdateIncident(ctx context.Context, id int64, f func(*Incident) error) (Incident, error) {
	start := time.Now()
	for attempt := 0; ; attempt++ {
		var ferr error // f's own errors are never retried
		inc, err := db.updateIncident(ctx, id, func(i *Incident) error { ferr = f(i); return ferr })
		if err == nil || ferr != nil || !retryable(err) {
			return inc, err
		}
		if time.Since(start) > db.retryFor {
			return Incident{}, fmt.Errorf("%w: incident %d, %d attempts in %v; try again", ErrIncidentConflict, id, attempt+1, db.retryFor)
		}
		if err := backoff(ctx, attempt); err != nil {
			return Incident{}, fmt.Errorf("catalog: update incident %d: %w", id, err)
		}
	}
}

// errIncidentRace: the incident's rev moved between read and write.
var errIncidentRace = errors.New("catalog: incident written concurrently")

func (db *DB) updateIncident(ctx context.Context, id int64, f func(*Incident) error) (Incident, error) {
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return Incident{}, fmt.Errorf("catalog: update incident %d: %w", id, err)
	}
	defer tx.Rollback()
	old, rev, err := db.readIncident(ctx, tx, id)
	if err != nil {
		return Incident{}, err
	}
	inc := old.clone()
	if err := f(&inc); err != nil {
		return Incident{}, fmt.Errorf("catalog: update incident %d: %w", id, err)
	}
	if err := checkIncidentChange(old, inc); err != nil {
		return Incident{}, err
	}
	inc.Updated = fromNanos(time.Now().UnixNano())
	if err := normalizeIncident(&inc); err != nil {
		return Incident{}, fmt.Errorf("catalog: update incident %d: %w", id, err)
	}
	cols, err := incidentColumns(inc)
	if err != nil {
		return Incident{}, fmt.Errorf("catalog: update incident %d: %w", id, err)
	}
	res, err := tx.ExecContext(ctx, db.q(`UPDATE incidents SET rev = rev + 1, (`+incidentWritten+`) =
		($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) WHERE id = $14 AND rev = $15`), append(cols, id, rev)...)
	if err != nil {
		return Incident{}, fmt.Errorf("catalog: update incident %d: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return Incident{}, fmt.Errorf("catalog: update incident %d: %w", id, err)
	} else if n != 1 {
		return Incident{}, errIncidentRace
	}
	if err := tx.Commit(); err != nil {
		return Incident{}, fmt.Errorf("catalog: update incident %d: commit: %w", id, err)
	}
	return inc, nil
}

// checkIncidentChange enforces what an update may not do.
func checkIncidentChange(old, inc Incident) error {
	if inc.ID != old.ID || !inc.Opened.Equal(old.Opened) {
		return fmt.Errorf("catalog: update incident %d: the id and opening time cannot change", old.ID)
	}
	if inc.State != old.State {
		next := incidentNext[old.State]
		switch _, known := incidentNext[inc.State]; {
		case !known:
			return fmt.Errorf("%w: incident %d: unknown state %q (open, contained, recovered or false-positive)", ErrIncidentState, old.ID, inc.State)
		case len(next) == 0:
			return fmt.Errorf("%w: incident %d cannot go from %s to %s: %s is final", ErrIncidentState, old.ID, old.State, inc.State, old.State)
		case !slices.Contains(next, inc.State):
			return fmt.Errorf("%w: incident %d cannot go from %s to %s", ErrIncidentState, old.ID, old.State, inc.State)
		}
	}
	if inc.Severity != old.Severity {
		switch {
		case severityRank[inc.Severity] == 0:
			return fmt.Errorf("catalog: update incident %d: severity %q is not warning, major or critical", old.ID, inc.Severity)
		case old.State != IncidentOpen:
			return fmt.Errorf("catalog: update incident %d: its severity is fixed once it is %s", old.ID, old.State)
		case severityRank[inc.Severity] < severityRank[old.Severity]:
			return fmt.Errorf("catalog: update incident %d: severity may only grow, not go from %s to %s", old.ID, old.Severity, inc.Severity)
		}
	}
	if len(inc.Actions) < len(old.Actions) {
		return fmt.Errorf("catalog: update incident %d: actions are append-only, %d of %d would be left", old.ID, len(inc.Actions), len(old.Actions))
	}
	for i, a := range old.Actions {
		b := inc.Actions[i]
		if !a.Time.Equal(b.Time) || a.Action != b.Action || a.Outcome != b.Outcome || a.By != b.By {
			return fmt.Errorf("catalog: update incident %d: actions are append-only; action %d (%s) was changed", old.ID, i, a.Action)
		}
	}
	return nil
}

// normalizeIncident checks inc and brings it to the form it reads back
// in: times in UTC to the nanosecond, lists sorted or capped, strings
// valid UTF-8, empty lists and maps nil.
func normalizeIncident(inc *Incident) error {
	if _, ok := incidentNext[inc.State]; !ok {
		return fmt.Errorf("%w: unknown state %q (open, contained, recovered or false-positive)", ErrIncidentState, inc.State)
	}
	if severityRank[inc.Severity] == 0 {
		return fmt.Errorf("severity %q is not warning, major or critical", inc.Severity)
	}
	inc.User, inc.Exe = printable(inc.User), printable(inc.Exe)
	// "" is a file outside every dataset: nothing to list.
	inc.Datasets = slices.DeleteFunc(slices.Clone(inc.Datasets), func(d string) bool { return d == "" })
	for _, d := range inc.Datasets {
		if err := checkName("dataset name", d); err != nil {
			return err
		}
	}
	inc.Datasets = slices.Compact(slices.Sorted(slices.Values(inc.Datasets)))
	for d, v := range inc.Recovery {
		if err := checkName("dataset name", d); err != nil {
			return err
		}
		if err := checkName("recovery point of "+d, v); err != nil {
			return err
		}
	}
	var err error
	if inc.FirstEvent, err = storedTime("first event", inc.FirstEvent); err != nil {
		return err
	}
	if inc.SignalsDropped < 0 {
		return fmt.Errorf("signals dropped is %d", inc.SignalsDropped)
	}
	if n := len(inc.Signals); n > MaxIncidentSignals {
		inc.SignalsDropped += n - MaxIncidentSignals
		inc.Signals = inc.Signals[:MaxIncidentSignals]
	}
	inc.Signals = slices.Clone(inc.Signals)
	for i := range inc.Signals {
		s := &inc.Signals[i]
		s.Detector, s.Path, s.Reason = printable(s.Detector), printable(s.Path), printable(s.Reason)
		if s.Time, err = storedTime("signal time", s.Time); err != nil {
			return err
		}
	}
	inc.Actions = slices.Clone(inc.Actions)
	for i := range inc.Actions {
		a := &inc.Actions[i]
		if strings.TrimSpace(a.Action) == "" {
			return fmt.Errorf("action %d is empty: say what was done", i)
		}
		a.Action, a.Outcome, a.By = printable(a.Action), printable(a.Outcome), printable(a.By)
		if a.Time, err = unixTime("time of action "+a.Action, a.Time); err != nil {
			return err
		}
	}
	inc.emptyToNil()
	return nil
}

// incidentWritten are the columns incidentColumns gives, in order.
const incidentWritten = `opened, updated, state, severity, uid, user_name, exe, datasets, first_event, recovery, signals, signals_dropped, actions`

const incidentCols = `id, rev, ` + incidentWritten

// incidentColumns is a normalized incident's column values.
func incidentColumns(inc Incident) ([]any, error) {
	var uid any
	if inc.UID != nil {
		uid = int64(*inc.UID)
	}
	recovery := inc.Recovery
	if recovery == nil {
		recovery = map[string]string{}
	}
	datasets, err := json.Marshal(nonNil(inc.Datasets))
	if err != nil {
		return nil, err
	}
	rec, err := json.Marshal(recovery)
	if err != nil {
		return nil, err
	}
	signals, err := json.Marshal(nonNil(inc.Signals))
	if err != nil {
		return nil, err
	}
	actions, err := json.Marshal(nonNil(inc.Actions))
	if err != nil {
		return nil, err
	}
	var first int64
	if !inc.FirstEvent.IsZero() {
		first = inc.FirstEvent.UnixNano()
	}
	return []any{inc.Opened.UnixNano(), inc.Updated.UnixNano(), inc.State, inc.Severity, uid, inc.User, inc.Exe,
		string(datasets), first, string(rec), string(signals), int64(inc.SignalsDropped), string(actions)}, nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (db *DB) readIncident(ctx context.Context, qr interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, id int64) (Incident, int64, error) {
	inc, rev, err := scanIncident(qr.QueryRowContext(ctx, db.q(`SELECT `+incidentCols+` FROM incidents WHERE id = $1`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return Incident{}, 0, fmt.Errorf("%w: %d", ErrNoIncident, id)
	}
	if err != nil {
		return Incident{}, 0, fmt.Errorf("catalog: incident %d: %w", id, err)
	}
	return inc, rev, nil
}

func scanIncident(sc interface{ Scan(...any) error }) (Incident, int64, error) {
	var inc Incident
	var rev, opened, updated, first, dropped int64
	var uid sql.NullInt64
	var datasets, recovery, signals, actions string
	if err := sc.Scan(&inc.ID, &rev, &opened, &updated, &inc.State, &inc.Severity, &uid, &inc.User, &inc.Exe,
		&datasets, &first, &recovery, &signals, &dropped, &actions); err != nil {
		return Incident{}, 0, err
	}
	inc.Opened, inc.Updated, inc.FirstEvent, inc.SignalsDropped = fromNanos(opened), fromNanos(updated), fromNanos(first), int(dropped)
	if uid.Valid {
		u := uint32(uid.Int64)
		inc.UID = &u
	}
	for _, c := range []struct {
		name, text string
		v          any
	}{{"datasets", datasets, &inc.Datasets}, {"recovery", recovery, &inc.Recovery}, {"signals", signals, &inc.Signals}, {"actions", actions, &inc.Actions}} {
		if err := json.Unmarshal([]byte(c.text), c.v); err != nil {
			return Incident{}, 0, fmt.Errorf("incident %d: %s: %w", inc.ID, c.name, err)
		}
	}
	inc.emptyToNil()
	return inc, rev, nil
}

// emptyToNil makes empty lists and maps nil, as they read back.
func (inc *Incident) emptyToNil() {
	if len(inc.Datasets) == 0 {
		inc.Datasets = nil
	}
	if len(inc.Recovery) == 0 {
		inc.Recovery = nil
	}
	if len(inc.Signals) == 0 {
		inc.Signals = nil
	}
	if len(inc.Actions) == 0 {
		inc.Actions = nil
	}
}

func (inc Incident) clone() Incident {
	c := inc
	if inc.UID != nil {
		u := *inc.UID
		c.UID = &u
	}
	c.Datasets = slices.Clone(inc.Datasets)
	c.Recovery = maps.Clone(inc.Recovery)
	c.Signals = slices.Clone(inc.Signals)
	c.Actions = slices.Clone(inc.Actions)
	return c
}

// retryable reports whether err is a lost race worth retrying: a
// concurrent write seen, or PostgreSQL's unique violation, serialization
// failure or deadlock.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.Is(err, errIncidentRace) ||
		errors.As(err, &pe) && (pe.Code == "23505" || pe.Code == "40001" || pe.Code == "40P01")
}

// backoff waits before try attempt+1: 1ms doubling to 64ms, with jitter so
// that racing writers spread out.
func backoff(ctx context.Context, attempt int) error {
	d := time.Millisecond << min(attempt, 6)
	t := time.NewTimer(d/2 + rand.N(d))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// storedTime is t as it reads back, the zero time staying zero.
func storedTime(what string, t time.Time) (time.Time, error) {
	if t.IsZero() {
		return t, nil
	}
	return unixTime(what, t)
}

// unixTime is t as it reads back; the zero time is refused.
func unixTime(what string, t time.Time) (time.Time, error) {
	n, err := unixNanos(what, t)
	return fromNanos(n), err
}

// printable is s as UTF-8 text without NUL bytes: s itself when it is,
// else with every invalid byte and NUL written \xNN. The guard records
// what an attacker chose (user and program names, paths); it must not be
// refused for them.
func printable(s string) string {
	if utf8.ValidString(s) && !strings.ContainsRune(s, 0) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == 0 || r == utf8.RuneError && n == 1 {
			fmt.Fprintf(&b, `\x%02x`, s[i])
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// IncidentFile is a file an incident touched.
type IncidentFile struct {
	Path    string // exact bytes, not necessarily UTF-8
	Dataset string
	First   time.Time // the earliest event seen on it
	Kinds   string    // the event kinds seen: a comma list, sorted, unique ("create,delete,modify,rename")
	OldPath string    // the name before a rename, "" if none
}

// fileBatch is how many incident files go in one statement.
const fileBatch = 500

// AddIncidentFiles records files incident id touched, in one
// transaction. A path recorded before (or given twice) keeps its earliest
// time and the union of its kinds; its dataset and old path are the ones
// first given, unless an earlier event brings others.
func (db *DB) AddIncidentFiles(ctx context.Context, id int64, files []IncidentFile) error {
	byPath := make(map[string]IncidentFile, len(files))
	for _, f := range files {
		f, err := normalizeFile(f)
		if err != nil {
			return fmt.Errorf("catalog: add files to incident %d: %w", id, err)
		}
		if prev, ok := byPath[f.Path]; ok {
			f = mergeFile(prev, f)
		}
		byPath[f.Path] = f
	}
	paths := slices.Sorted(maps.Keys(byPath))
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("catalog: add files to incident %d: %w", id, err)
	}
	defer tx.Rollback()
	// Lock the incident: adders of the same paths merge one after the
	// other (SQLite's transactions already do).
	lock := ""
	if db.driver == Postgres {
		lock = " FOR UPDATE"
	}
	var found int64
	if err := tx.QueryRowContext(ctx, db.q(`SELECT id FROM incidents WHERE id = $1`+lock), id).Scan(&found); errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: %d", ErrNoIncident, id)
	} else if err != nil {
		return fmt.Errorf("catalog: add files to incident %d: %w", id, err)
	}
	for start := 0; start < len(paths); start += fileBatch {
		batch := paths[start:min(start+fileBatch, len(paths))]
		old, err := db.incidentFiles(ctx, tx, id, batch)
		if err != nil {
			return fmt.Errorf("catalog: add files to incident %d: %w", id, err)
		}
		var values strings.Builder
		args := []any{id}
		for i, p := range batch {
			f := byPath[p]
			if o, ok := old[p]; ok {
				f = mergeFile(o, f)
			}
			if i > 0 {
				values.WriteString(", ")
			}
			n := len(args)
			fmt.Fprintf(&values, "($1, $%d, $%d, $%d, $%d, $%d)", n+1, n+2, n+3, n+4, n+5)
			args = append(args, blob(f.Path), f.Dataset, f.First.UnixNano(), f.Kinds, blob(f.OldPath))
		}
		if _, err := tx.ExecContext(ctx, db.q(`INSERT INTO incident_files (incident, path, dataset, first_seen, kinds, old_path)
			VALUES `+values.String()+`
			ON CONFLICT (incident, path) DO UPDATE SET dataset = excluded.dataset, first_seen = excluded.first_seen,
				kinds = excluded.kinds, old_path = excluded.old_path`), args...); err != nil {
			return fmt.Errorf("catalog: add files to incident %d: %w", id, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("catalog: add files to incident %d: commit: %w", id, err)
	}
	return nil
}

// IncidentFiles lists the files incident id touched, by path (bytewise).
func (db *DB) IncidentFiles(ctx context.Context, id int64) ([]IncidentFile, error) {
	if _, _, err := db.readIncident(ctx, db.db, id); err != nil {
		return nil, err
	}
	rs, err := db.db.QueryContext(ctx, db.q(`SELECT path, dataset, first_seen, kinds, old_path FROM incident_files WHERE incident = $1 ORDER BY path`), id)
	if err != nil {
		return nil, fmt.Errorf("catalog: files of incident %d: %w", id, err)
	}
	out, err := scanFiles(rs)
	if err != nil {
		return nil, fmt.Errorf("catalog: files of incident %d: %w", id, err)
	}
	return out, nil
}

// incidentFiles reads the rows of paths already recorded for incident id.
func (db *DB) incidentFiles(ctx context.Context, tx *sql.Tx, id int64, paths []string) (map[string]IncidentFile, error) {
	ph := make([]string, len(paths))
	args := []any{id}
	for i, p := range paths {
		ph[i], args = fmt.Sprintf("$%d", i+2), append(args, blob(p))
	}
	rs, err := tx.QueryContext(ctx, db.q(`SELECT path, dataset, first_seen, kinds, old_path FROM incident_files
		WHERE incident = $1 AND path IN (`+strings.Join(ph, ", ")+`)`), args...)
	if err != nil {
		return nil, err
	}
	fs, err := scanFiles(rs)
	if err != nil {
		return nil, err
	}
	out := make(map[string]IncidentFile, len(fs))
	for _, f := range fs {
		out[f.Path] = f
	}
	return out, nil
}

func scanFiles(rs *sql.Rows) ([]IncidentFile, error) {
	defer rs.Close()
	var out []IncidentFile
	for rs.Next() {
		var f IncidentFile
		var path, oldPath []byte
		var first int64
		if err := rs.Scan(&path, &f.Dataset, &first, &f.Kinds, &oldPath); err != nil {
			return nil, err
		}
		f.Path, f.OldPath, f.First = string(path), string(oldPath), fromNanos(first)
		out = append(out, f)
	}
	return out, rs.Err()
}

// blob is s as a non-nil []byte: a nil one would be stored as NULL.
func blob(s string) []byte { return append(make([]byte, 0, len(s)), s...) }

// normalizeFile checks f and sorts its kinds.
func normalizeFile(f IncidentFile) (IncidentFile, error) {
	if f.Path == "" {
		return f, errors.New("a file with no path")
	}
	if f.Dataset != "" {
		if err := checkName("dataset name", f.Dataset); err != nil {
			return f, fmt.Errorf("file %q: %w", f.Path, err)
		}
	}
	var err error
	if f.First, err = unixTime("time", f.First); err != nil {
		return f, fmt.Errorf("file %q: %w", f.Path, err)
	}
	var kinds []string
	for k := range strings.SplitSeq(f.Kinds, ",") {
		if k == "" {
			continue
		}
		if strings.Trim(k, "abcdefghijklmnopqrstuvwxyz0123456789.-") != "" {
			return f, fmt.Errorf("file %q: event kind %q is not lower-case letters, digits, '.' and '-'", f.Path, k)
		}
		kinds = append(kinds, k)
	}
	f.Kinds = strings.Join(slices.Compact(slices.Sorted(slices.Values(kinds))), ",")
	return f, nil
}

// mergeFile merges two records of one path.
func mergeFile(a, b IncidentFile) IncidentFile {
	if b.First.Before(a.First) {
		a, b = b, a
	}
	out := a
	if out.Dataset == "" {
		out.Dataset = b.Dataset
	}
	if out.OldPath == "" {
		out.OldPath = b.OldPath
	}
	kinds := slices.Concat(strings.Split(a.Kinds, ","), strings.Split(b.Kinds, ","))
	kinds = slices.DeleteFunc(slices.Compact(slices.Sorted(slices.Values(kinds))), func(k string) bool { return k == "" })
	out.Kinds = strings.Join(kinds, ",")
	return out
}

// Lockout is a principal locked out of the protected datasets.
type Lockout struct {
	UID      uint32
	User     string
	Incident int64 // 0: not from an incident
	Since    time.Time
	By       string
}

// ErrNoLockout: the uid is not locked out.
var ErrNoLockout = errors.New("catalog: not locked out")

// AddLockout records a lockout. A uid already locked out keeps the
// lockout it has.
func (db *DB) AddLockout(ctx context.Context, l Lockout) error {
	if err := checkName("locked by", l.By); err != nil {
		return fmt.Errorf("catalog: lock out uid %d: %w", l.UID, err)
	}
	since, err := unixNanos("lockout time", l.Since)
	if err != nil {
		return fmt.Errorf("catalog: lock out uid %d: %w", l.UID, err)
	}
	if _, err := db.db.ExecContext(ctx, db.q(`INSERT INTO lockouts (uid, user_name, incident, since, locked_by, released_at, released_by)
		VALUES ($1, $2, $3, $4, $5, 0, '') ON CONFLICT (uid) WHERE released_at = 0 DO NOTHING`),
		int64(l.UID), printable(l.User), l.Incident, since, l.By); err != nil {
		return fmt.Errorf("catalog: lock out uid %d: %w", l.UID, err)
	}
	return nil
}

// ReleaseLockout ends uid's lockout and returns it; the row is kept, with
// who released it and when. It returns ErrNoLockout if uid is not locked
// out.
func (db *DB) ReleaseLockout(ctx context.Context, uid uint32, by string, at time.Time) (Lockout, error) {
	if err := checkName("released by", by); err != nil {
		return Lockout{}, fmt.Errorf("catalog: release uid %d: %w", uid, err)
	}
	n, err := unixNanos("release time", at)
	if err != nil {
		return Lockout{}, fmt.Errorf("catalog: release uid %d: %w", uid, err)
	}
	l := Lockout{UID: uid}
	var since int64
	err = db.db.QueryRowContext(ctx, db.q(`UPDATE lockouts SET released_at = $1, released_by = $2 WHERE uid = $3 AND released_at = 0
		RETURNING user_name, incident, since, locked_by`), n, by, int64(uid)).Scan(&l.User, &l.Incident, &since, &l.By)
	if errors.Is(err, sql.ErrNoRows) {
		return Lockout{}, fmt.Errorf("%w: uid %d", ErrNoLockout, uid)
	}
	if err != nil {
		return Lockout{}, fmt.Errorf("catalog: release uid %d: %w", uid, err)
	}
	l.Since = fromNanos(since)
	return l, nil
}

// Lockouts lists the active lockouts, oldest first.
func (db *DB) Lockouts(ctx context.Context) ([]Lockout, error) {
	// A prepared statement: a running guard asks every second.
	rs, err := db.query(ctx, `SELECT uid, user_name, incident, since, locked_by FROM lockouts WHERE released_at = 0 ORDER BY since, uid`)
	if err != nil {
		return nil, fmt.Errorf("catalog: lockouts: %w", err)
	}
	defer rs.Close()
	var out []Lockout
	for rs.Next() {
		var l Lockout
		var uid, since int64
		if err := rs.Scan(&uid, &l.User, &l.Incident, &since, &l.By); err != nil {
			return nil, fmt.Errorf("catalog: lockouts: %w", err)
		}
		l.UID, l.Since = uint32(uid), fromNanos(since)
		out = append(out, l)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("catalog: lockouts: %w", err)
	}
	return out, nil
}

// allowanceUID is uid's key in allowances: -1 for the unknown principal.
func allowanceUID(uid *uint32) int64 {
	if uid == nil {
		return -1
	}
	return int64(*uid)
}

// Allowance is how much of detector's signal the guard learned is normal
// for principal uid (nil: the unknown principal); 0 if nothing was learned.
func (db *DB) Allowance(ctx context.Context, uid *uint32, detector string) (int, error) {
	var n int64
	err := db.db.QueryRowContext(ctx, db.q(`SELECT allowance FROM allowances WHERE uid = $1 AND detector = $2`), allowanceUID(uid), detector).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("catalog: allowance of %s: %w", detector, err)
	}
	return int(n), nil
}

// RaiseAllowance raises uid's allowance for detector to n, if n is more.
func (db *DB) RaiseAllowance(ctx context.Context, uid *uint32, detector string, n int) error {
	if err := checkName("detector", detector); err != nil {
		return fmt.Errorf("catalog: raise allowance: %w", err)
	}
	if n < 0 {
		return fmt.Errorf("catalog: raise allowance of %s: %d is negative", detector, n)
	}
	if _, err := db.db.ExecContext(ctx, db.q(`INSERT INTO allowances (uid, detector, allowance) VALUES ($1, $2, $3)
		ON CONFLICT (uid, detector) DO UPDATE SET allowance = CASE WHEN excluded.allowance > allowances.allowance
			THEN excluded.allowance ELSE allowances.allowance END`), allowanceUID(uid), detector, int64(n)); err != nil {
		return fmt.Errorf("catalog: raise allowance of %s: %w", detector, err)
	}
	return nil
}
