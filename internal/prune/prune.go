package prune

import (
	"context"
	"fmt"
	"time"

	"github.com/custodyhq/custody/internal/backend"
	"github.com/custodyhq/custody/internal/snapshot"
	"github.com/custodyhq/custody/internal/vault"
)

// Options tune prune.
type Options struct {
	// SafetyMargin is how long packs stay marked before they are deleted.
	// A snapshot that started before the mark and still runs may rely on
	// them; the margin must exceed the longest snapshot. 0 deletes at once,
	// which is only safe when nothing else writes to the vault.
	SafetyMargin time.Duration
	// MaxUnused is the share of a pack's bytes that may be unused before
	// the pack is repacked (its used blobs copied to new packs).
	MaxUnused float64
	DryRun    bool
}

// DefaultOptions are what the CLI uses unless told otherwise.
var DefaultOptions = Options{SafetyMargin: time.Hour, MaxUnused: 0.2}

// Stats say what prune found and did.
type Stats struct {
	Versions        int   `json:"versions"`
	UsedBlobs       int   `json:"used_blobs"`
	Packs           int   `json:"packs"`
	PacksMarked     int   `json:"packs_marked"`
	PacksRepacked   int   `json:"packs_repacked"`
	PacksDeleted    int   `json:"packs_deleted"`
	PacksKept       int   `json:"packs_kept_in_use"` // marked earlier, but used again: not deleted
	BytesMarked     int64 `json:"bytes_marked"`
	BytesDeleted    int64 `json:"bytes_deleted"`
	RepackedBytes   int64 `json:"bytes_repacked"`
	IndexObjects    int   `json:"index_objects"`
	PendingAwaiting int   `json:"pending_awaiting_margin"`
	TempRemoved     int   `json:"temp_files_removed"`
}

type state struct {
	used    map[vault.ID]bool
	index   []vault.ID                    // index objects read
	packs   map[vault.ID][]vault.BlobInfo // from the index objects
	where   map[vault.ID][]vault.ID       // blob -> packs
	stored  map[vault.ID]backend.Info
	pending map[vault.ID]backend.Info
	marked  map[vault.ID]bool // packs in any pending object
}

// Run prunes v: it deletes packs marked at least SafetyMargin ago that are
// still unneeded, then marks packs that no version needs (and repacks
// mostly unused ones). Every step is safe to interrupt and run again.
func Run(ctx context.Context, v *vault.Vault, opts Options) (*Stats, error) {
	st := &Stats{}
	used, nver, err := usedBlobs(ctx, v)
	if err != nil {
		return nil, err
	}
	st.Versions, st.UsedBlobs = nver, len(used)
	if !opts.DryRun {
		if err := deleteDue(ctx, v, used, opts.SafetyMargin, st); err != nil {
			return st, err
		}
	}
	if err := mark(ctx, v, used, opts, st); err != nil {
		return st, err
	}
	if opts.SafetyMargin == 0 && !opts.DryRun {
		if err := deleteDue(ctx, v, used, 0, st); err != nil {
			return st, err
		}
	}
	if t, ok := v.Backend().(interface {
		RemoveStaleTemp(context.Context, time.Duration) (int, error)
	}); ok && !opts.DryRun {
		n, err := t.RemoveStaleTemp(ctx, max(opts.SafetyMargin, time.Hour))
		if err != nil {
			return st, err
		}
		st.TempRemoved = n
	}
	s, err := load(ctx, v, used)
	if err != nil {
		return st, err
	}
	st.Packs, st.IndexObjects = len(s.stored), len(s.index)
	for _, info := range s.pending {
		if time.Since(info.ModTime) < opts.SafetyMargin {
			st.PendingAwaiting++
		}
	}
	return st, nil
}

// usedBlobs walks every version and returns every tree and data blob they
// reference. Any unreadable version or tree stops prune: deciding on
// partial knowledge could delete data that is still needed.
func usedBlobs(ctx context.Context, v *vault.Vault) (map[vault.ID]bool, int, error) {
	versions, err := v.Versions(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("prune: %w (run 'custody check'; prune refuses to run on a damaged vault)", err)
	}
	used := map[vault.ID]bool{}
	for _, ver := range versions {
		if err := snapshot.WalkBlobs(ctx, v, ver.Tree, used, nil); err != nil {
			return nil, 0, fmt.Errorf("prune: version %s: %w (run 'custody check'; prune refuses to run on a damaged vault)", ver.ID.Short(), err)
		}
	}
	return used, len(versions), nil
}

func load(ctx context.Context, v *vault.Vault, used map[vault.ID]bool) (*state, error) {
	s := &state{used: used, packs: map[vault.ID][]vault.BlobInfo{}, where: map[vault.ID][]vault.ID{}, marked: map[vault.ID]bool{}}
	var err error
	if s.index, err = v.IndexObjects(ctx); err != nil {
		return nil, err
	}
	for _, id := range s.index {
		packs, err := v.ReadIndexObject(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("prune: %w (run 'custody check')", err)
		}
		for _, p := range packs {
			if _, seen := s.packs[p.Pack]; seen {
				continue
			}
			s.packs[p.Pack] = p.Blobs
			for _, b := range p.Blobs {
				s.where[b.ID] = append(s.where[b.ID], p.Pack)
			}
		}
	}
	if s.stored, err = v.PackIDs(ctx); err != nil {
		return nil, err
	}
	if s.pending, err = v.PendingDeletions(ctx); err != nil {
		return nil, err
	}
	for id := range s.pending {
		p, err := v.LoadPending(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("prune: %w", err)
		}
		for _, pk := range p.Packs {
			s.marked[pk] = true
		}
	}
	return s, nil
}

// mark records packs nothing needs, repacking mostly unused ones first.
func mark(ctx context.Context, v *vault.Vault, used map[vault.ID]bool, opts Options, st *Stats) error {
	s, err := load(ctx, v, used)
	if err != nil {
		return err
	}
	var unused, repack []vault.ID
	for p, info := range s.stored {
		if s.marked[p] {
			continue
		}
		blobs, indexed := s.packs[p]
		if !indexed {
			// An unindexed pack is either a crashed writer's leftover or a
			// running writer's newest pack: only the margin tells them apart.
			if time.Since(info.ModTime) >= opts.SafetyMargin {
				unused = append(unused, p)
				st.BytesMarked += info.Size
			}
			continue
		}
		var total, free int64
		for _, b := range blobs {
			total += int64(b.Length)
			if !used[b.ID] {
				free += int64(b.Length)
			}
		}
		switch {
		case free == total:
			unused = append(unused, p)
			st.BytesMarked += info.Size
		case total > 0 && float64(free)/float64(total) > opts.MaxUnused:
			repack = append(repack, p)
		}
	}
	st.PacksMarked, st.PacksRepacked = len(unused), len(repack)
	if opts.DryRun || len(unused)+len(repack) == 0 {
		return nil
	}
	// Mark first, then copy: once marked, the repacked packs' blobs no
	// longer count for deduplication, so SaveBlob really writes the copies.
	if _, err := v.MarkForDeletion(ctx, append(unused, repack...)); err != nil {
		return err
	}
	for _, p := range repack {
		for _, b := range s.packs[p] {
			if !used[b.ID] {
				continue
			}
			plain, err := v.LoadBlob(ctx, b.ID)
			if err != nil {
				return fmt.Errorf("repack pack %s: %w", p.Short(), err)
			}
			n, err := v.SaveBlob(ctx, b.Type, b.ID, plain)
			if err != nil {
				return fmt.Errorf("repack pack %s: %w", p.Short(), err)
			}
			st.RepackedBytes += int64(n)
		}
	}
	return v.Flush(ctx)
}

// deleteDue deletes the packs of pending objects older than margin, except
// any that hold a used blob found nowhere else. Order matters for crash
// safety: a consolidated index without those packs is written, the old
// index objects are deleted, then the packs, and the pending objects last,
// so the packs stay excluded from deduplication until they are gone.
func deleteDue(ctx context.Context, v *vault.Vault, used map[vault.ID]bool, margin time.Duration, st *Stats) error {
	s, err := load(ctx, v, used)
	if err != nil {
		return err
	}
	var due []vault.ID
	doomed := map[vault.ID]bool{}
	for id, info := range s.pending {
		if time.Since(info.ModTime) < margin {
			continue
		}
		due = append(due, id)
		p, err := v.LoadPending(ctx, id)
		if err != nil {
			return err
		}
		for _, pk := range p.Packs {
			doomed[pk] = true
		}
	}
	if len(due) == 0 {
		return nil
	}
	for p := range doomed {
		for _, b := range s.packs[p] {
			if used[b.ID] && !elsewhere(s, b.ID, doomed) {
				delete(doomed, p) // still needed: keep it, it is unmarked below
				st.PacksKept++
				break
			}
		}
	}
	var keep []vault.PackBlobs
	for p, blobs := range s.packs {
		if !doomed[p] {
			keep = append(keep, vault.PackBlobs{Pack: p, Blobs: blobs})
		}
	}
	var fresh vault.ID
	if len(keep) > 0 {
		if fresh, err = v.WriteIndex(ctx, keep); err != nil {
			return err
		}
	}
	for _, id := range s.index {
		if id != fresh {
			if err := v.DeleteObject(ctx, backend.Index, id); err != nil {
				return fmt.Errorf("delete index %s: %w", id.Short(), err)
			}
		}
	}
	for p := range doomed {
		if err := v.DeleteObject(ctx, backend.Packs, p); err != nil {
			return fmt.Errorf("delete pack %s: %w", p.Short(), err)
		}
		st.PacksDeleted++
		st.BytesDeleted += s.stored[p].Size
	}
	for _, id := range due {
		if err := v.DeleteObject(ctx, backend.Pending, id); err != nil {
			return fmt.Errorf("delete pending %s: %w", id.Short(), err)
		}
	}
	return nil
}

func elsewhere(s *state, blob vault.ID, doomed map[vault.ID]bool) bool {
	for _, p := range s.where[blob] {
		if _, ok := s.stored[p]; ok && !doomed[p] {
			return true
		}
	}
	return false
}
