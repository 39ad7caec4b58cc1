package catalog

import (
	"context"
	"errors"
	"testing"
	"time"
)

// offsiteSuite tests the offsite records; runSuite runs it on every driver.
func offsiteSuite(t *testing.T, o opener) {
	ctx := context.Background()
	at := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)

	t.Run("AddAndList", func(t *testing.T) {
		db := o.open(t, o.fresh(t))
		off := Offsite{Name: "dr", URL: "s3://backup/vault", Endpoint: "http://127.0.0.1:7070", Region: "us-east-1", LockMode: "COMPLIANCE", LockDays: 30, Created: at, Baseline: []byte("{}")}
		if err := db.AddOffsite(ctx, off); err != nil {
			t.Fatal(err)
		}
		if err := db.AddOffsite(ctx, off); !errors.Is(err, ErrOffsiteExists) {
			t.Fatalf("adding twice: %v", err)
		}
		got, err := db.Offsite(ctx, "dr")
		if err != nil || got.URL != off.URL || got.LockMode != "COMPLIANCE" || got.LockDays != 30 || !got.Created.Equal(at) || string(got.Baseline) != "{}" {
			t.Fatalf("Offsite: %+v %v", got, err)
		}
		if _, err := db.Offsite(ctx, "nope"); !errors.Is(err, ErrNoOffsite) {
			t.Fatalf("unknown offsite: %v", err)
		}
		for name, bad := range map[string]Offsite{
			"mode without days": {Name: "a", URL: "s3://b", LockMode: "GOVERNANCE", Created: at},
			"days without mode": {Name: "b", URL: "s3://b", LockDays: 3, Created: at},
			"unknown mode":      {Name: "c", URL: "s3://b", LockMode: "FOREVER", LockDays: 3, Created: at},
			"no name":           {URL: "s3://b", Created: at},
		} {
			if err := db.AddOffsite(ctx, bad); err == nil {
				t.Errorf("%s: accepted", name)
			}
		}
	})

	t.Run("ObjectsNeverLoseRetention", func(t *testing.T) {
		db := o.open(t, o.fresh(t))
		if err := db.AddOffsite(ctx, Offsite{Name: "dr", URL: "s3://b/p", Created: at}); err != nil {
			t.Fatal(err)
		}
		later, sooner := at.Add(30*24*time.Hour), at.Add(24*time.Hour)
		put := func(objs ...OffsiteObject) {
			t.Helper()
			if err := db.PutOffsiteObjects(ctx, "dr", objs); err != nil {
				t.Fatal(err)
			}
		}
		put(OffsiteObject{Key: "data/aa", Size: 10, VersionID: "v1", SHA256: "x", RetainUntil: later, PushedAt: at},
			OffsiteObject{Key: "config", Size: 5, VersionID: "v2", SHA256: "y", PushedAt: at})
		put(OffsiteObject{Key: "data/aa", Size: 10, RetainUntil: sooner, PushedAt: at}, // a weaker record
			OffsiteObject{Key: "config", Size: 5, LegalHold: true, PushedAt: at})
		got := map[string]OffsiteObject{}
		if err := db.OffsiteObjects(ctx, "dr", func(o OffsiteObject) error { got[o.Key] = o; return nil }); err != nil {
			t.Fatal(err)
		}
		if a := got["data/aa"]; !a.RetainUntil.Equal(later) || a.VersionID != "v1" || a.SHA256 != "x" {
			t.Fatalf("data/aa: %+v", a)
		}
		if c := got["config"]; !c.LegalHold || !c.RetainUntil.IsZero() || c.VersionID != "v2" {
			t.Fatalf("config: %+v", c)
		}
		if err := db.ForgetOffsiteObjects(ctx, "dr", []string{"config"}); err != nil {
			t.Fatal(err)
		}
		n := 0
		db.OffsiteObjects(ctx, "dr", func(OffsiteObject) error { n++; return nil })
		if n != 1 {
			t.Fatalf("%d objects after forgetting one of two", n)
		}
		if err := db.PutOffsiteObjects(ctx, "nope", []OffsiteObject{{Key: "k", PushedAt: at}}); err == nil {
			t.Fatal("objects of an unknown offsite accepted")
		}
	})
}
