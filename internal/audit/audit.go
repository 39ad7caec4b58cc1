// Package audit records who did what into a vault's ledger and proves it:
// entries are appended to the catalog's Merkle log, and after every batch a
// checkpoint is signed with the vault's ledger key and kept both in the
// catalog and in the vault, so that rewriting the catalog's history is
// caught by the checkpoints held elsewhere.
package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"slices"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/custodyhq/custody/internal/backend"
	"github.com/custodyhq/custody/internal/ledger"
	"github.com/custodyhq/custody/internal/vault"
)

// Catalog is what the recorder needs from the metadata database.
type Catalog interface {
	ledger.Store
	SaveCheckpoint(ctx context.Context, size int64, signed []byte) error
}

// Vault is what the recorder needs from the vault.
type Vault interface {
	ID() string
	LedgerSeed() []byte
	PutCheckpoint(ctx context.Context, signed []byte) error
	Checkpoints(ctx context.Context) ([][]byte, error)
}

var _ Vault = (*vault.Vault)(nil)

// Origin names a vault's log in its checkpoints and verifier key.
func Origin(vaultID string) string { return "custody.vault/" + vaultID[:16] }

// Recorder appends entries and signs checkpoints.
type Recorder struct {
	v    Vault
	db   Catalog
	log  *ledger.Log
	keys *ledger.Keys
}

// New returns the recorder of v's ledger kept in db.
func New(v Vault, db Catalog) (*Recorder, error) {
	keys, err := ledger.NewKeys(Origin(v.ID()), v.LedgerSeed())
	if err != nil {
		return nil, err
	}
	return &Recorder{v: v, db: db, log: ledger.New(db), keys: keys}, nil
}

// VerifierKey is the note verifier key auditors use to check checkpoints.
func (r *Recorder) VerifierKey() string { return r.keys.Verifier }

// Record appends entries and signs a checkpoint covering them; it returns
// the index of the first.
func (r *Recorder) Record(ctx context.Context, entries ...ledger.Entry) (int64, error) {
	records := make([][]byte, len(entries))
	for i := range entries {
		b, err := entries[i].Leaf()
		if err != nil {
			return 0, err
		}
		records[i] = b
	}
	first, err := r.log.Append(ctx, records)
	if err != nil {
		return 0, fmt.Errorf("audit: %w", err)
	}
	if _, err := r.Checkpoint(ctx); err != nil {
		return first, err
	}
	return first, nil
}

// Checkpoint signs the current tree and keeps the checkpoint in the
// catalog and in the vault. It returns the signed note.
func (r *Recorder) Checkpoint(ctx context.Context) ([]byte, error) {
	size, signed, err := r.sign(ctx)
	if err != nil {
		return nil, err
	}
	if err := r.db.SaveCheckpoint(ctx, size, signed); err != nil {
		return nil, fmt.Errorf("audit checkpoint: %w", err)
	}
	// A read-only view of the vault (a point-in-time restore from an
	// offsite) cannot take it; the catalog has it.
	if err := r.v.PutCheckpoint(ctx, signed); err != nil && !errors.Is(err, backend.ErrReadOnly) {
		return nil, fmt.Errorf("audit checkpoint: %w", err)
	}
	return signed, nil
}

// sign signs a checkpoint of the current tree.
func (r *Recorder) sign(ctx context.Context) (int64, []byte, error) {
	t, err := r.log.Tree(ctx)
	if err != nil {
		return 0, nil, fmt.Errorf("audit checkpoint: %w", err)
	}
	signed, err := ledger.SignCheckpoint(r.keys, t)
	if err != nil {
		return 0, nil, fmt.Errorf("audit checkpoint: %w", err)
	}
	return t.N, signed, nil
}

// Prove returns the inclusion proof of record index in the current tree
// and the signed checkpoint of that tree.
func (r *Recorder) Prove(ctx context.Context, index int64) (tlog.RecordProof, []byte, error) {
	signed, err := r.Checkpoint(ctx)
	if err != nil {
		return nil, nil, err
	}
	c, err := ledger.OpenCheckpoint(signed, r.keys.Verifier)
	if err != nil {
		return nil, nil, err
	}
	p, err := r.log.ProveInclusion(index, c.Tree.N)
	if err != nil {
		return nil, nil, err
	}
	return p, signed, nil
}

// ProveConsistency proves that the current tree extends the one old (a
// checkpoint an auditor kept) signed, and returns the proof with a fresh
// signed checkpoint of the current tree. old must verify under this log's
// key: a checkpoint of another log or a forged one is refused.
func (r *Recorder) ProveConsistency(ctx context.Context, old []byte) (tlog.TreeProof, []byte, error) {
	oc, err := ledger.OpenCheckpoint(old, r.keys.Verifier)
	if err != nil {
		return nil, nil, fmt.Errorf("the checkpoint given: %w", err)
	}
	signed, err := r.Checkpoint(ctx)
	if err != nil {
		return nil, nil, err
	}
	c, err := ledger.OpenCheckpoint(signed, r.keys.Verifier)
	if err != nil {
		return nil, nil, err
	}
	if oc.Tree.N > c.Tree.N {
		return nil, nil, fmt.Errorf("%w: the checkpoint given covers %d entries, the log holds only %d", ledger.ErrTampered, oc.Tree.N, c.Tree.N)
	}
	p, err := r.log.ProveConsistency(oc.Tree.N, c.Tree.N)
	if err != nil {
		return nil, nil, err
	}
	// A proof is only worth giving if it holds: a rewritten log has none.
	if err := tlog.CheckTree(p, c.Tree.N, c.Tree.Hash, oc.Tree.N, oc.Tree.Hash); err != nil {
		return nil, nil, fmt.Errorf("%w: the log does not extend the checkpoint given (%d entries): %v", ledger.ErrTampered, oc.Tree.N, err)
	}
	return p, signed, nil
}

// Verify checks the whole log against every checkpoint the vault holds
// and those given (an auditor's older copies). A checkpoint that does not
// verify is itself tampering.
func (r *Recorder) Verify(ctx context.Context, held [][]byte) (int64, error) {
	stored, err := r.v.Checkpoints(ctx)
	if err != nil {
		return 0, err
	}
	var cps []*ledger.Checkpoint
	for i, msg := range append(stored, held...) {
		c, err := ledger.OpenCheckpoint(msg, r.keys.Verifier)
		if err != nil {
			what := "a checkpoint stored in the vault"
			if i >= len(stored) {
				what = "the checkpoint given"
			}
			return 0, fmt.Errorf("%w: %s does not verify: %v", ledger.ErrTampered, what, err)
		}
		cps = append(cps, c)
	}
	slices.SortFunc(cps, func(a, b *ledger.Checkpoint) int { return int(a.Tree.N - b.Tree.N) })
	if err := ledger.Verify(ctx, r.db.Records(ctx, 0), r.db, cps); err != nil {
		return 0, err
	}
	return r.db.Size(ctx)
}

// Self is the actor for actions of this process: its OS user and executable.
func Self() ledger.Actor {
	uid := uint32(os.Getuid())
	a := ledger.Actor{UID: &uid, PID: os.Getpid()}
	if u, err := user.Current(); err == nil {
		a.User = u.Username
	}
	if exe, err := os.Executable(); err == nil {
		a.Exe = exe
	}
	return a
}

// Outcome is the outcome field for err.
func Outcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, context.Canceled):
		return "interrupted"
	}
	return "failed: " + err.Error()
}
