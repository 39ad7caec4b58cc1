package offsite

import (
	"context"
	"time"

	"github.com/custodyhq/custody/internal/backend"
	"github.com/custodyhq/custody/internal/catalog"
)

// Status compares the vault with what an offsite holds, from the catalog
// alone: no request reaches the bucket (`offsite audit` checks the bucket).
type Status struct {
	Name         string    `json:"name"`
	URL          string    `json:"url"`
	Endpoint     string    `json:"endpoint,omitempty"`
	LockMode     string    `json:"lock_mode,omitempty"`
	LockDays     int       `json:"lock_days,omitempty"`
	Local        int       `json:"local_objects"`
	Pushed       int       `json:"pushed_objects"`
	Pending      int       `json:"pending_objects"` // in the vault, not yet offsite
	PendingBytes int64     `json:"pending_bytes"`
	LastPush     time.Time `json:"last_push,omitzero"`
	Locked       int       `json:"objects_retained"`               // with retention still running or a legal hold
	NextExpiry   time.Time `json:"next_retention_expiry,omitzero"` // the soonest running retention ends
}

// GetStatus reports offsite rec's state against the vault in local.
func GetStatus(ctx context.Context, rec catalog.Offsite, local backend.Backend, db *catalog.DB, now time.Time) (Status, error) {
	st := Status{Name: rec.Name, URL: rec.URL, Endpoint: rec.Endpoint, LockMode: rec.LockMode, LockDays: rec.LockDays}
	pushed := map[string]bool{}
	err := db.OffsiteObjects(ctx, rec.Name, func(o catalog.OffsiteObject) error {
		pushed[o.Key] = true
		st.Pushed++
		if o.PushedAt.After(st.LastPush) {
			st.LastPush = o.PushedAt
		}
		if o.LegalHold || o.RetainUntil.After(now) {
			st.Locked++
		}
		if o.RetainUntil.After(now) && (st.NextExpiry.IsZero() || o.RetainUntil.Before(st.NextExpiry)) {
			st.NextExpiry = o.RetainUntil
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	for _, kind := range pushOrder {
		err := local.List(ctx, kind, func(fi backend.Info) error {
			st.Local++
			if !pushed[fi.Handle.String()] {
				st.Pending++
				st.PendingBytes += fi.Size
			}
			return nil
		})
		if err != nil {
			return st, err
		}
	}
	return st, nil
}
