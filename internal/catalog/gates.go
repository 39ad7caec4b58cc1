package catalog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Gate is one closing of the zero-trust gate: while it is closed, offsite
// pushes and destructive steps on its dataset ("" = every dataset) refuse.
type Gate struct {
	ID       string
	Dataset  string // "" = the whole vault
	Reason   string
	ClosedBy string
	ClosedAt time.Time
	OpenedBy string    // "" while closed
	OpenedAt time.Time // zero while closed
}

// Open reports whether the gate was opened again.
func (g Gate) Open() bool { return !g.OpenedAt.IsZero() }

// ErrNoGate: no gate has that id.
var ErrNoGate = errors.New("catalog: no such gate")

// ErrGateClosed is what a refused step wraps; GateClosedError says which
// gate and how to open it.
var ErrGateClosed = errors.New("the zero-trust gate is closed")

// GateClosedError names the gates that stopped a step.
type GateClosedError struct {
	Step  string
	Gates []Gate
}

func (e *GateClosedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s refused: %v", e.Step, ErrGateClosed)
	for _, g := range e.Gates {
		what := "for the whole vault"
		if g.Dataset != "" {
			what = "for dataset " + g.Dataset
		}
		fmt.Fprintf(&b, "; gate %s closed %s at %s by %s (%s)", g.ID, what, g.ClosedAt.UTC().Format(time.RFC3339), g.ClosedBy, g.Reason)
	}
	b.WriteString("; resolve the incident, then run `custody gate open ID`")
	return b.String()
}

func (e *GateClosedError) Unwrap() error { return ErrGateClosed }

// CloseGate closes the gate for dataset ("" = the whole vault) and
// returns it.
func (db *DB) CloseGate(ctx context.Context, dataset, reason, by string, at time.Time) (Gate, error) {
	if dataset != "" {
		if err := checkName("dataset", dataset); err != nil {
			return Gate{}, err
		}
	}
	if strings.TrimSpace(reason) == "" {
		return Gate{}, errors.New("catalog: close gate: give a reason (the incident, or why)")
	}
	if err := checkText("reason", reason); err != nil {
		return Gate{}, err
	}
	if err := checkName("closed by", by); err != nil {
		return Gate{}, err
	}
	if at.IsZero() {
		return Gate{}, errors.New("catalog: close gate: no time")
	}
	var id [6]byte
	rand.Read(id[:])
	g := Gate{ID: "g" + hex.EncodeToString(id[:]), Dataset: dataset, Reason: reason, ClosedBy: by, ClosedAt: at.UTC()}
	_, err := db.db.ExecContext(ctx, db.q(`INSERT INTO gates (id, dataset, reason, closed_by, closed_at, opened_by, opened_at) VALUES ($1, $2, $3, $4, $5, '', 0)`),
		g.ID, g.Dataset, g.Reason, g.ClosedBy, g.ClosedAt.UnixNano())
	if err != nil {
		return Gate{}, fmt.Errorf("catalog: close gate: %w", err)
	}
	return g, nil
}

// OpenGate opens the gate id again. Opening an open gate is an error: two
// people resolving one incident should know.
func (db *DB) OpenGate(ctx context.Context, id, by string, at time.Time) (Gate, error) {
	if err := checkName("opened by", by); err != nil {
		return Gate{}, err
	}
	if at.IsZero() {
		return Gate{}, errors.New("catalog: open gate: no time")
	}
	res, err := db.db.ExecContext(ctx, db.q(`UPDATE gates SET opened_by = $1, opened_at = $2 WHERE id = $3 AND opened_at = 0`), by, at.UnixNano(), id)
	if err != nil {
		return Gate{}, fmt.Errorf("catalog: open gate: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return Gate{}, fmt.Errorf("catalog: open gate: %w", err)
	}
	g, gerr := db.gate(ctx, id)
	if gerr != nil {
		return Gate{}, gerr
	}
	if n == 0 {
		return g, fmt.Errorf("catalog: gate %s was already opened by %s at %s", id, g.OpenedBy, g.OpenedAt.UTC().Format(time.RFC3339))
	}
	return g, nil
}

func (db *DB) gate(ctx context.Context, id string) (Gate, error) {
	gs, err := db.gates(ctx, `WHERE id = $1`, id)
	if err != nil {
		return Gate{}, err
	}
	if len(gs) == 0 {
		return Gate{}, fmt.Errorf("%w %q: see `custody gate status`", ErrNoGate, id)
	}
	return gs[0], nil
}

// Gates lists gates, closed ones first, each group oldest first; all
// includes those opened again.
func (db *DB) Gates(ctx context.Context, all bool) ([]Gate, error) {
	if all {
		return db.gates(ctx, `ORDER BY opened_at <> 0, closed_at, id`)
	}
	return db.gates(ctx, `WHERE opened_at = 0 ORDER BY closed_at, id`)
}

// CheckGate returns a *GateClosedError (wrapping ErrGateClosed) when a
// gate is closed for any of datasets or for the whole vault; with no
// datasets, any closed gate counts (for vault-wide steps like prune and
// push).
func (db *DB) CheckGate(ctx context.Context, step string, datasets ...string) error {
	closed, err := db.Gates(ctx, false)
	if err != nil {
		return err
	}
	var hit []Gate
	for _, g := range closed {
		if len(datasets) == 0 || g.Dataset == "" {
			hit = append(hit, g)
			continue
		}
		for _, d := range datasets {
			if g.Dataset == d {
				hit = append(hit, g)
				break
			}
		}
	}
	if len(hit) > 0 {
		return &GateClosedError{Step: step, Gates: hit}
	}
	return nil
}

func (db *DB) gates(ctx context.Context, where string, args ...any) ([]Gate, error) {
	rs, err := db.db.QueryContext(ctx, db.q(`SELECT id, dataset, reason, closed_by, closed_at, opened_by, opened_at FROM gates `+where), args...)
	if err != nil {
		return nil, fmt.Errorf("catalog: gates: %w", err)
	}
	defer rs.Close()
	var out []Gate
	for rs.Next() {
		var g Gate
		var closedAt, openedAt int64
		if err := rs.Scan(&g.ID, &g.Dataset, &g.Reason, &g.ClosedBy, &closedAt, &g.OpenedBy, &openedAt); err != nil {
			return nil, fmt.Errorf("catalog: gates: %w", err)
		}
		g.ClosedAt = time.Unix(0, closedAt).UTC()
		if openedAt != 0 {
			g.OpenedAt = time.Unix(0, openedAt).UTC()
		}
		out = append(out, g)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("catalog: gates: %w", err)
	}
	return out, nil
}
