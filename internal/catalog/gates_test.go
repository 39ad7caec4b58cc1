package catalog

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// gatesSuite tests the zero-trust gate; runSuite runs it on every driver.
func gatesSuite(t *testing.T, o opener) {
	ctx := context.Background()
	at := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)

	t.Run("CloseCheckOpen", func(t *testing.T) {
		db := o.open(t, o.fresh(t))
		if err := db.CheckGate(ctx, "prune"); err != nil {
			t.Fatalf("no gate closed: %v", err)
		}
		g, err := db.CloseGate(ctx, "raw", "incident 7: mass renames by uid 1001", "guard", at)
		if err != nil {
			t.Fatal(err)
		}
		// A dataset's gate stops steps on it and vault-wide steps, not
		// steps on other datasets.
		err = db.CheckGate(ctx, "forget", "raw")
		var gce *GateClosedError
		if !errors.Is(err, ErrGateClosed) || !errors.As(err, &gce) || len(gce.Gates) != 1 || gce.Gates[0].ID != g.ID {
			t.Fatalf("forget on raw: %v", err)
		}
		for _, want := range []string{"forget refused", g.ID, "dataset raw", "incident 7", "custody gate open"} {
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("message %q lacks %q", err, want)
			}
		}
		if err := db.CheckGate(ctx, "prune"); !errors.Is(err, ErrGateClosed) {
			t.Fatalf("vault-wide step: %v", err)
		}
		if err := db.CheckGate(ctx, "forget", "train"); err != nil {
			t.Fatalf("other dataset: %v", err)
		}
		// A vault-wide gate stops every dataset.
		all, err := db.CloseGate(ctx, "", "drill", "alice", at.Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if err := db.CheckGate(ctx, "forget", "train"); !errors.Is(err, ErrGateClosed) {
			t.Fatalf("vault-wide gate, other dataset: %v", err)
		}
		if gs, _ := db.Gates(ctx, false); len(gs) != 2 || gs[0].ID != g.ID || gs[1].ID != all.ID {
			t.Fatalf("closed gates: %+v", gs)
		}
		opened, err := db.OpenGate(ctx, all.ID, "alice", at.Add(time.Hour))
		if err != nil || !opened.Open() || opened.OpenedBy != "alice" {
			t.Fatalf("OpenGate: %+v %v", opened, err)
		}
		if _, err := db.OpenGate(ctx, all.ID, "bob", at.Add(2*time.Hour)); err == nil || !strings.Contains(err.Error(), "already opened by alice") {
			t.Fatalf("opening twice: %v", err)
		}
		if _, err := db.OpenGate(ctx, "gnothere", "bob", at); !errors.Is(err, ErrNoGate) {
			t.Fatalf("unknown gate: %v", err)
		}
		if err := db.CheckGate(ctx, "forget", "train"); err != nil {
			t.Fatalf("after opening the vault-wide gate: %v", err)
		}
		if _, err := db.OpenGate(ctx, g.ID, "alice", at.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := db.CheckGate(ctx, "prune"); err != nil {
			t.Fatalf("all open: %v", err)
		}
		if gs, _ := db.Gates(ctx, true); len(gs) != 2 || !gs[0].Open() || !gs[1].Open() {
			t.Fatalf("history kept: %+v", gs)
		}
	})

	t.Run("BadInput", func(t *testing.T) {
		db := o.open(t, o.fresh(t))
		for name, c := range map[string]struct{ dataset, reason, by string }{
			"no reason":       {"raw", " ", "alice"},
			"no actor":        {"raw", "why", ""},
			"control in name": {"ra\x00w", "why", "alice"},
		} {
			if _, err := db.CloseGate(ctx, c.dataset, c.reason, c.by, at); err == nil {
				t.Errorf("%s: accepted", name)
			}
		}
		if _, err := db.CloseGate(ctx, "raw", "why", "alice", time.Time{}); err == nil {
			t.Error("zero time accepted")
		}
	})
}
