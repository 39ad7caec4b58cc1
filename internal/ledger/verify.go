package ledger

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// ErrTampered wraps every finding of Verify.
var ErrTampered = errors.New("the audit log was tampered with")

// Records yields the log's records in index order, from 0.
type Records func(yield func(index int64, record []byte) bool) error

// Verify rebuilds the tree from the records themselves and checks it
// against the stored hashes and against the signed checkpoints an auditor
// holds (newest last). It names the first record that differs from what
// was hashed, a record missing or inserted, or a history rewritten after a
// checkpoint was signed.
func Verify(ctx context.Context, records Records, stored Store, checkpoints []*Checkpoint) error {
	storedSize, err := stored.Size(ctx)
	if err != nil {
		return err
	}
	rebuilt := &MemStore{}
	var n int64
	var firstBad int64 = -1
	var batch [][]byte
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		hs, err := computeStoredHashes(n-int64(len(batch)), batch, rebuilt)
		if err != nil {
			return err
		}
		if err := rebuilt.Append(ctx, n-int64(len(batch)), nil, hs); err != nil {
			return err
		}
		batch = batch[:0]
		return nil
	}
	err = records(func(i int64, rec []byte) bool {
		if i != n {
			firstBad = n // a gap or a reordering
			return false
		}
		if firstBad < 0 && n < storedSize {
			got, err := stored.ReadHashes([]int64{tlog.StoredHashIndex(0, n)})
			if err == nil && got[0] != tlog.RecordHash(rec) {
				firstBad = n
			}
		}
		batch = append(batch, rec)
		n++
		if len(batch) == 4096 {
			if flush() != nil {
				return false
			}
		}
		return ctx.Err() == nil
	})
	if err != nil {
		return fmt.Errorf("verify: read records: %w", err)
	}
	if err := flush(); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	switch {
	case firstBad >= 0:
		return fmt.Errorf("%w: record %d differs from the hash stored for it, or is missing or out of place", ErrTampered, firstBad)
	case n != storedSize:
		return fmt.Errorf("%w: %d records but the tree holds %d: records were deleted or inserted", ErrTampered, n, storedSize)
	}
	for _, cp := range checkpoints {
		if cp.Tree.N > n {
			return fmt.Errorf("%w: a checkpoint covers %d records but the log has %d: records were deleted", ErrTampered, cp.Tree.N, n)
		}
		t, err := treeAt(rebuilt, cp.Tree.N)
		if err != nil {
			return err
		}
		if t.Hash != cp.Tree.Hash {
			return fmt.Errorf("%w: the first %d records do not hash to the signed checkpoint: history was rewritten after it was signed", ErrTampered, cp.Tree.N)
		}
	}
	return nil
}
