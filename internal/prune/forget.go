// Package prune removes what is no longer wanted: forget drops versions by
// a retention policy, prune deletes the data no version needs, in two
// phases with a safety margin so that concurrent writers are never harmed.
package prune

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/custodyhq/custody/internal/vault"
)

// Policy says which versions of a dataset to keep. A version kept by any
// rule is kept. The zero Policy keeps everything.
type Policy struct {
	KeepLast   int           // the newest n
	KeepWithin time.Duration // those stored within this long before now
}

// Empty reports whether the policy has no rule (forget refuses it).
func (p Policy) Empty() bool { return p.KeepLast <= 0 && p.KeepWithin <= 0 }

// Decision is forget's verdict on one version.
type Decision struct {
	Version *vault.Version
	Keep    bool
	Reasons []string
}

// Select applies p to versions of one dataset. Ages come from the store's
// clock (StoredAt), not from the time the client wrote into the version, so
// a forged timestamp cannot make a version expire early.
func Select(versions []*vault.Version, p Policy, now time.Time) []Decision {
	vs := slices.Clone(versions)
	when := func(v *vault.Version) time.Time {
		if !v.StoredAt.IsZero() {
			return v.StoredAt
		}
		return v.Time
	}
	slices.SortStableFunc(vs, func(a, b *vault.Version) int { return when(b).Compare(when(a)) })
	out := make([]Decision, len(vs))
	for i, v := range vs {
		d := Decision{Version: v}
		if i < p.KeepLast {
			d.Reasons = append(d.Reasons, fmt.Sprintf("last %d", p.KeepLast))
		}
		if p.KeepWithin > 0 && now.Sub(when(v)) <= p.KeepWithin {
			d.Reasons = append(d.Reasons, "within "+p.KeepWithin.String())
		}
		d.Keep = len(d.Reasons) > 0
		out[i] = d
	}
	return out
}

// ErrEmptyPolicy: forget without any keep rule would delete everything.
var ErrEmptyPolicy = errors.New("forget needs a rule: --keep-last N and/or --keep-within DURATION")

// Forget applies p to one dataset's versions and deletes those not kept,
// unless dryRun. It returns every decision.
func Forget(ctx context.Context, v *vault.Vault, dataset string, p Policy, dryRun bool) ([]Decision, error) {
	if p.Empty() {
		return nil, ErrEmptyPolicy
	}
	// Unreadable versions are left alone (and reported by the vault's
	// log): forget removes what a policy rejects, never what it cannot read.
	all, _, err := v.ReadableVersions(ctx)
	if err != nil {
		return nil, err
	}
	var mine []*vault.Version
	for _, ver := range all {
		if ver.Dataset == dataset {
			mine = append(mine, ver)
		}
	}
	if len(mine) == 0 {
		return nil, fmt.Errorf("dataset %q has no versions (see 'custody log')", dataset)
	}
	ds := Select(mine, p, time.Now())
	if dryRun {
		return ds, nil
	}
	for _, d := range ds {
		if d.Keep {
			continue
		}
		if err := v.DeleteVersion(ctx, d.Version.ID); err != nil {
			return ds, fmt.Errorf("forget version %s: %w", d.Version.ID.Short(), err)
		}
	}
	return ds, nil
}
