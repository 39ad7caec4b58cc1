package catalog

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/custodyhq/custody/internal/catalog/pgtest"
)

func TestIncidentsSQLite(t *testing.T) {
	incidentsSuite(t, opener{fresh: func(t *testing.T) string {
		return filepath.Join(t.TempDir(), "catalog.db")
	}})
}

func TestIncidentsPostgres(t *testing.T) {
	server := pgtest.Server(t)
	incidentsSuite(t, opener{fresh: func(t *testing.T) string {
		return pgtest.NewDatabase(t, server)
	}})
}

// incidentsSuite tests the guard's state: incidents, their files,
// lockouts and allowances.
func incidentsSuite(t *testing.T, o opener) {
	ctx := context.Background()
	at := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	uid := uint32(1001)
	sample := func() Incident {
		return Incident{
			Severity: SeverityWarning, UID: &uid, User: "mallory", Exe: "/tmp/x\xffy",
			Datasets:   []string{"train", "raw", "", "train"},
			FirstEvent: at.Add(123 * time.Nanosecond),
			Recovery:   map[string]string{"raw": "1a2b3c", "train": "4d5e6f"},
			Signals:    []IncidentSignal{{Detector: "entropy", Strength: 2, Time: at, Path: "/data/raw/a.bin", Reason: "7.99 bits/byte"}},
			Actions:    []IncidentAction{{Time: at, Action: "snapshot raw -> 1a2b3c", Outcome: "ok", By: "guard"}},
		}
	}

	t.Run("OpenGetList", func(t *testing.T) {
		db := o.open(t, o.fresh(t))
		if got, err := db.Incidents(ctx); err != nil || len(got) != 0 {
			t.Fatalf("Incidents on empty: %v %v", got, err)
		}
		before := time.Now()
		a, err := db.OpenIncident(ctx, sample())
		if err != nil {
			t.Fatal(err)
		}
		if a.ID != 1 || a.State != IncidentOpen || a.Opened.Before(before.Add(-time.Second)) || !a.Updated.Equal(a.Opened) {
			t.Fatalf("opened %+v", a)
		}
		if want := []string{"raw", "train"}; !slices.Equal(a.Datasets, want) {
			t.Fatalf("datasets %q, want %q", a.Datasets, want)
		}
		if a.Exe != `/tmp/x\xffy` {
			t.Fatalf("exe %q: invalid UTF-8 not escaped", a.Exe)
		}
		got, err := db.Incident(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(a, got); d != "" {
			t.Fatalf("read back differs (-opened +read):\n%s", d)
		}
		anon := Incident{Severity: SeverityCritical}
		b, err := db.OpenIncident(ctx, anon)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := db.Incident(ctx, b.ID); got.UID != nil || got.Datasets != nil || got.Recovery != nil || got.Actions != nil {
			t.Fatalf("unknown principal, no lists: %+v", got)
		}
		c, err := db.OpenIncident(ctx, sample())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.UpdateIncident(ctx, b.ID, func(i *Incident) error { i.State = IncidentContained; return nil }); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			states []string
			want   []int64
		}{
			{nil, []int64{c.ID, b.ID, a.ID}},
			{[]string{IncidentOpen}, []int64{c.ID, a.ID}},
			{[]string{IncidentContained}, []int64{b.ID}},
			{[]string{IncidentOpen, IncidentContained}, []int64{c.ID, b.ID, a.ID}},
			{[]string{IncidentRecovered}, nil},
		} {
			list, err := db.Incidents(ctx, c.states...)
			if err != nil {
				t.Fatal(err)
			}
			var ids []int64
			for _, i := range list {
				ids = append(ids, i.ID)
			}
			if !slices.Equal(ids, c.want) {
				t.Errorf("Incidents(%q) = %v, want %v", c.states, ids, c.want)
			}
		}
		if _, err := db.Incidents(ctx, "closed"); err == nil {
			t.Error("unknown state listed")
		}
		if _, err := db.Incident(ctx, 99); !errors.Is(err, ErrNoIncident) {
			t.Errorf("unknown incident: %v", err)
		}
		for name, inc := range map[string]Incident{
			"no severity":      {},
			"bad severity":     {Severity: "apocalyptic"},
			"not open":         {Severity: SeverityMajor, State: IncidentContained},
			"bad dataset":      {Severity: SeverityMajor, Datasets: []string{"r\naw"}},
			"empty action":     {Severity: SeverityMajor, Actions: []IncidentAction{{Time: at}}},
			"action sans time": {Severity: SeverityMajor, Actions: []IncidentAction{{Action: "alert"}}},
		} {
			if _, err := db.OpenIncident(ctx, inc); err == nil {
				t.Errorf("%s: opened", name)
			}
		}
	})

	t.Run("Transitions", func(t *testing.T) {
		db := o.open(t, o.fresh(t))
		// reach holds the path from open to each state.
		reach := map[string][]string{
			IncidentOpen:          nil,
			IncidentContained:     {IncidentContained},
			IncidentRecovered:     {IncidentContained, IncidentRecovered},
			IncidentFalsePositive: {IncidentFalsePositive},
		}
		legal := map[[2]string]bool{
			{IncidentOpen, IncidentContained}:          true,
			{IncidentOpen, IncidentRecovered}:          true,
			{IncidentOpen, IncidentFalsePositive}:      true,
			{IncidentContained, IncidentRecovered}:     true,
			{IncidentContained, IncidentFalsePositive}: true,
		}
		states := []string{IncidentOpen, IncidentContained, IncidentRecovered, IncidentFalsePositive, "closed"}
		for _, from := range states[:4] {
			for _, to := range states {
				if from == to {
					continue
				}
				inc, err := db.OpenIncident(ctx, sample())
				if err != nil {
					t.Fatal(err)
				}
				for _, s := range reach[from] {
					if _, err := db.UpdateIncident(ctx, inc.ID, func(i *Incident) error { i.State = s; return nil }); err != nil {
						t.Fatalf("reaching %s: %v", from, err)
					}
				}
				got, err := db.UpdateIncident(ctx, inc.ID, func(i *Incident) error { i.State = to; return nil })
				if legal[[2]string{from, to}] {
					if err != nil || got.State != to {
						t.Errorf("%s -> %s refused: %v", from, to, err)
					}
					continue
				}
				if !errors.Is(err, ErrIncidentState) || !strings.Contains(err.Error(), to) ||
					(to != "closed" && !strings.Contains(err.Error(), from)) {
					t.Errorf("%s -> %s: %v", from, to, err)
				}
				if cur, _ := db.Incident(ctx, inc.ID); cur.State != from {
					t.Errorf("%s -> %s refused, but the state is now %s", from, to, cur.State)
				}
			}
		}
		// A final incident still takes actions (the lockout released
		// after a false positive).
		fp, _ := db.Incidents(ctx, IncidentFalsePositive)
		if _, err := db.UpdateIncident(ctx, fp[0].ID, func(i *Incident) error {
			i.Actions = append(i.Actions, IncidentAction{Time: at, Action: "release uid 1001", By: "alice"})
			return nil
		}); err != nil {
			t.Fatalf("action on a final incident: %v", err)
		}
	})

	t.Run("Severity", func(t *testing.T) {
		db := o.open(t, o.fresh(t))
		for _, c := range []struct {
			state, from, to string
			ok              bool
		}{
			{IncidentOpen, SeverityWarning, SeverityMajor, true},
			{IncidentOpen, SeverityWarning, SeverityCritical, true},
			{IncidentOpen, SeverityMajor, SeverityCritical, true},
			{IncidentOpen, SeverityCritical, SeverityMajor, false},
			{IncidentOpen, SeverityMajor, SeverityWarning, false},
			{IncidentOpen, SeverityMajor, "catastrophic", false},
			{IncidentContained, SeverityWarning, SeverityMajor, false},
			{IncidentContained, SeverityMajor, SeverityWarning, false},
		} {
			inc := sample()
			inc.Severity = c.from
			inc, err := db.OpenIncident(ctx, inc)
			if err != nil {
				t.Fatal(err)
			}
			if c.state != IncidentOpen {
				if _, err := db.UpdateIncident(ctx, inc.ID, func(i *Incident) error { i.State = c.state; return nil }); err != nil {
					t.Fatal(err)
				}
			}
			got, err := db.UpdateIncident(ctx, inc.ID, func(i *Incident) error { i.Severity = c.to; return nil })
			if c.ok != (err == nil) || c.ok && got.Severity != c.to {
				t.Errorf("%s incident, %s -> %s: %v", c.state, c.from, c.to, err)
			}
			if cur, _ := db.Incident(ctx, inc.ID); !c.ok && cur.Severity != c.from {
				t.Errorf("%s incident, %s -> %s refused, but severity is now %s", c.state, c.from, c.to, cur.Severity)
			}
		}
		// Raising severity and containing in one update is allowed: the
		// incident was open.
		inc, _ := db.OpenIncident(ctx, sample())
		if _, err := db.UpdateIncident(ctx, inc.ID, func(i *Incident) error {
			i.State, i.Severity = IncidentContained, SeverityCritical
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("UpdateRules", func(t *testing.T) {
		db := o.open(t, o.fresh(t))
		inc, err := db.OpenIncident(ctx, sample())
		if err != nil {
			t.Fatal(err)
		}
		abort := errors.New("changed my mind")
		for name, c := range map[string]struct {
			f    func(*Incident) error
			want error
		}{
			"f aborts":        {func(i *Incident) error { i.Severity = SeverityCritical; return abort }, abort},
			"id changed":      {func(i *Incident) error { i.ID++; return nil }, nil},
			"opened changed":  {func(i *Incident) error { i.Opened = at; return nil }, nil},
			"action removed":  {func(i *Incident) error { i.Actions = nil; return nil }, nil},
			"action reworded": {func(i *Incident) error { i.Actions[0].Outcome = "failed"; return nil }, nil},
		} {
			_, err := db.UpdateIncident(ctx, inc.ID, c.f)
			if err == nil || c.want != nil && !errors.Is(err, c.want) {
				t.Errorf("%s: %v", name, err)
			}
		}
		if got, _ := db.Incident(ctx, inc.ID); !cmp.Equal(got, inc) {
			t.Fatalf("refused updates changed the incident: %s", cmp.Diff(inc, got))
		}
		if _, err := db.UpdateIncident(ctx, 99, func(*Incident) error { return nil }); !errors.Is(err, ErrNoIncident) {
			t.Fatalf("unknown incident: %v", err)
		}
		// Signals past the cap are counted, not kept.
		got, err := db.UpdateIncident(ctx, inc.ID, func(i *Incident) error {
			for n := range 250 {
				i.Signals = append(i.Signals, IncidentSignal{Detector: "rename-burst", Strength: 1, Time: at, Path: fmt.Sprint(n)})
			}
			return nil
		})
		if err != nil || len(got.Signals) != MaxIncidentSignals || got.SignalsDropped != 51 || got.Signals[0].Detector != "entropy" {
			t.Fatalf("capped signals: %d kept, %d dropped, %v", len(got.Signals), got.SignalsDropped, err)
		}
		got, err = db.UpdateIncident(ctx, inc.ID, func(i *Incident) error {
			i.Signals = append(i.Signals, IncidentSignal{Detector: "canary"})
			return nil
		})
		if err != nil || len(got.Signals) != MaxIncidentSignals || got.SignalsDropped != 52 {
			t.Fatalf("signal past a full list: %d kept, %d dropped, %v", len(got.Signals), got.SignalsDropped, err)
		}
		if read, _ := db.Incident(ctx, inc.ID); !cmp.Equal(read, got) || read.Updated.Before(inc.Updated) {
			t.Fatalf("read back differs: %s", cmp.Diff(got, read))
		}
	})

	t.Run("ConcurrentUpdatesLoseNothing", func(t *testing.T) {
		db := o.open(t, o.fresh(t))
		inc, err := db.OpenIncident(ctx, Incident{Severity: SeverityWarning})
		if err != nil {
			t.Fatal(err)
		}
		const writers, each = 4, 25
		var wg sync.WaitGroup
		errs := make(chan error, writers*each)
		for w := range writers {
			wg.Go(func() {
				for n := range each {
					_, err := db.UpdateIncident(ctx, inc.ID, func(i *Incident) error {
						i.Actions = append(i.Actions, IncidentAction{Time: at, Action: fmt.Sprintf("w%d-%d", w, n), By: "guard"})
						return nil
					})
					if err != nil {
						errs <- err
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		got, err := db.Incident(ctx, inc.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Actions) != writers*each {
			t.Fatalf("%d actions, want %d", len(got.Actions), writers*each)
		}
		next := make([]int, writers)
		for _, a := range got.Actions {
			var w, n int
			fmt.Sscanf(a.Action, "w%d-%d", &w, &n)
			if n != next[w] {
				t.Fatalf("writer %d: action %d where %d was due", w, n, next[w])
			}
			next[w]++
		}
	})

	t.Run("RetriesWhenRaced", func(t *testing.T) {
		db := o.open(t, o.fresh(t))
		if db.Driver() == SQLite {
			t.Skip("SQLite takes the write lock at BEGIN: an update cannot be raced")
		}
		inc, err := db.OpenIncident(ctx, Incident{Severity: SeverityWarning})
		if err != nil {
			t.Fatal(err)
		}
		// The first call of f lets another writer in: the write must
		// notice, and f run again on what that writer left.
		calls := 0
		got, err := db.UpdateIncident(ctx, inc.ID, func(i *Incident) error {
			calls++
			if calls == 1 {
				if _, err := db.UpdateIncident(ctx, inc.ID, func(i *Incident) error {
					i.Actions = append(i.Actions, IncidentAction{Time: at, Action: "other"})
					return nil
				}); err != nil {
					return err
				}
			}
			i.Actions = append(i.Actions, IncidentAction{Time: at, Action: "mine"})
			return nil
		})
		if err != nil || calls != 2 || len(got.Actions) != 2 || got.Actions[0].Action != "other" || got.Actions[1].Action != "mine" {
			t.Fatalf("after %d calls: %+v %v", calls, got.Actions, err)
		}
		// Raced every time, it gives up.
		db.retryFor = 200 * time.Millisecond
		_, err = db.UpdateIncident(ctx, inc.ID, func(i *Incident) error {
			_, err := db.UpdateIncident(ctx, inc.ID, func(*Incident) error { return nil })
			return err
		})
		if !errors.Is(err, ErrIncidentConflict) {
			t.Fatalf("raced every time: %v", err)
		}
	})

	t.Run("FilesMerge", func(t *testing.T) {
		db := o.open(t, o.fresh(t))
		inc, err := db.OpenIncident(ctx, sample())
		if err != nil {
			t.Fatal(err)
		}
		const n = 5000
		files := make([]IncidentFile, n)
		for i := range files {
			files[i] = IncidentFile{Path: fmt.Sprintf("/data/raw/f%05d", i), Dataset: "raw", First: at.Add(time.Duration(i) * time.Millisecond), Kinds: "modify"}
		}
		files[7].Path = "/data/raw/\xff\x00odd" // an attacker's name, exact bytes
		files[8].Kinds, files[8].OldPath = "rename,create", "/data/raw/before"
		if err := db.AddIncidentFiles(ctx, inc.ID, files); err != nil {
			t.Fatal(err)
		}
		want, err := db.IncidentFiles(ctx, inc.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(want) != n || !slices.IsSortedFunc(want, func(a, b IncidentFile) int { return strings.Compare(a.Path, b.Path) }) {
			t.Fatalf("%d files, sorted %v", len(want), slices.IsSortedFunc(want, func(a, b IncidentFile) int { return strings.Compare(a.Path, b.Path) }))
		}
		// Adding the same files again, later, changes nothing; a later
		// rename does not replace the old path known.
		again := slices.Clone(files)
		for i := range again {
			again[i].First = again[i].First.Add(time.Hour)
		}
		again[8].OldPath = "/elsewhere"
		if err := db.AddIncidentFiles(ctx, inc.ID, again); err != nil {
			t.Fatal(err)
		}
		got, _ := db.IncidentFiles(ctx, inc.ID)
		if d := cmp.Diff(want, got); d != "" {
			t.Fatalf("adding the same files later changed them:\n%s", d)
		}
		// Earlier events and new kinds merge in, duplicates in one call
		// too.
		f := files[8]
		if err := db.AddIncidentFiles(ctx, inc.ID, []IncidentFile{
			{Path: files[0].Path, First: at.Add(-time.Minute), Kinds: "create"},
			{Path: files[0].Path, First: at.Add(time.Minute), Kinds: "delete,modify"},
			{Path: f.Path, First: at.Add(-time.Second), Kinds: "delete", OldPath: "/data/raw/earlier"},
			{Path: "/data/raw/new", Dataset: "raw", First: at, Kinds: "create,create"},
			{Path: files[9].Path, First: at.Add(time.Hour), Kinds: "rename", OldPath: "/data/raw/renamed-later"},
		}); err != nil {
			t.Fatal(err)
		}
		got, _ = db.IncidentFiles(ctx, inc.ID)
		byPath := map[string]IncidentFile{}
		for _, g := range got {
			byPath[g.Path] = g
		}
		for _, w := range []IncidentFile{
			{Path: files[0].Path, Dataset: "raw", First: at.Add(-time.Minute), Kinds: "create,delete,modify"},
			{Path: f.Path, Dataset: "raw", First: at.Add(-time.Second), Kinds: "create,delete,rename", OldPath: "/data/raw/earlier"},
			{Path: "/data/raw/new", Dataset: "raw", First: at, Kinds: "create"},
			{Path: files[7].Path, Dataset: "raw", First: files[7].First, Kinds: "modify"},
			{Path: files[9].Path, Dataset: "raw", First: files[9].First, Kinds: "modify,rename", OldPath: "/data/raw/renamed-later"},
		} {
			if d := cmp.Diff(w, byPath[w.Path]); d != "" {
				t.Errorf("%q:\n%s", w.Path, d)
			}
		}
		if len(got) != n+1 {
			t.Fatalf("%d files, want %d", len(got), n+1)
		}
		other, _ := db.OpenIncident(ctx, sample())
		if fs, err := db.IncidentFiles(ctx, other.ID); err != nil || len(fs) != 0 {
			t.Fatalf("another incident's files: %d %v", len(fs), err)
		}
		if err := db.AddIncidentFiles(ctx, 99, files[:1]); !errors.Is(err, ErrNoIncident) {
			t.Fatalf("files of an unknown incident: %v", err)
		}
		for name, bad := range map[string]IncidentFile{
			"no path":  {First: at, Kinds: "modify"},
			"no time":  {Path: "/x", Kinds: "modify"},
			"bad kind": {Path: "/x", First: at, Kinds: "modify; drop table"},
		} {
			if err := db.AddIncidentFiles(ctx, inc.ID, []IncidentFile{bad}); err == nil {
				t.Errorf("%s: accepted", name)
			}
		}
	})

	t.Run("Lockouts", func(t *testing.T) {
		db := o.open(t, o.fresh(t))
		first := Lockout{UID: 1001, User: "mallory", Incident: 7, Since: at, By: "guard"}
		for _, l := range []Lockout{first, {UID: 1001, User: "mallory", Incident: 8, Since: at.Add(time.Hour), By: "alice"}, {UID: 1002, User: "bob", Since: at.Add(time.Minute), By: "alice"}} {
			if err := db.AddLockout(ctx, l); err != nil {
				t.Fatal(err)
			}
		}
		got, err := db.Lockouts(ctx)
		if err != nil || len(got) != 2 || got[0] != first || got[1].UID != 1002 {
			t.Fatalf("Lockouts: %+v %v", got, err)
		}
		released, err := db.ReleaseLockout(ctx, 1001, "alice", at.Add(2*time.Hour))
		if err != nil || released != first {
			t.Fatalf("ReleaseLockout: %+v %v", released, err)
		}
		if _, err := db.ReleaseLockout(ctx, 1001, "alice", at.Add(3*time.Hour)); !errors.Is(err, ErrNoLockout) {
			t.Fatalf("releasing twice: %v", err)
		}
		if got, _ := db.Lockouts(ctx); len(got) != 1 || got[0].UID != 1002 {
			t.Fatalf("after release: %+v", got)
		}
		again := Lockout{UID: 1001, User: "mallory", Incident: 9, Since: at.Add(4 * time.Hour), By: "guard"}
		if err := db.AddLockout(ctx, again); err != nil {
			t.Fatal(err)
		}
		if got, _ := db.Lockouts(ctx); len(got) != 2 || got[1] != again {
			t.Fatalf("locked out again: %+v", got)
		}
		var rows, releasedRows int
		if err := db.db.QueryRowContext(ctx, `SELECT COUNT(*), COUNT(CASE WHEN released_by = 'alice' THEN 1 END) FROM lockouts WHERE uid = 1001`).Scan(&rows, &releasedRows); err != nil || rows != 2 || releasedRows != 1 {
			t.Fatalf("history: %d rows, %d released (%v)", rows, releasedRows, err)
		}
		if err := db.AddLockout(ctx, Lockout{UID: 1003, Since: at}); err == nil {
			t.Fatal("lockout with no actor accepted")
		}
	})

	t.Run("AllowanceKeepsMax", func(t *testing.T) {
		db := o.open(t, o.fresh(t))
		root := uint32(0)
		for _, c := range []struct {
			uid      *uint32
			detector string
			raise    int
			want     int
		}{
			{&uid, "rename-burst", 5, 5},
			{&uid, "rename-burst", 3, 5},
			{&uid, "rename-burst", 8, 8},
			{&uid, "entropy", 2, 2},
			{nil, "rename-burst", 1, 1}, // the unknown principal is its own
			{&root, "rename-burst", 4, 4},
		} {
			if err := db.RaiseAllowance(ctx, c.uid, c.detector, c.raise); err != nil {
				t.Fatal(err)
			}
			if got, err := db.Allowance(ctx, c.uid, c.detector); err != nil || got != c.want {
				t.Errorf("raise to %d: allowance %d, want %d (%v)", c.raise, got, c.want, err)
			}
		}
		for _, c := range []struct {
			uid  *uint32
			want int
		}{{&uid, 8}, {nil, 1}, {&root, 4}} {
			if got, _ := db.Allowance(ctx, c.uid, "rename-burst"); got != c.want {
				t.Errorf("allowance %d, want %d", got, c.want)
			}
		}
		if got, err := db.Allowance(ctx, &uid, "canary"); err != nil || got != 0 {
			t.Errorf("nothing learned: %d %v", got, err)
		}
		if err := db.RaiseAllowance(ctx, &uid, "entropy", -1); err == nil {
			t.Error("negative allowance accepted")
		}
	})
}
