package catalog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// indexSuite tests the dataset, version, ref and principal index; runSuite
// runs it on every driver.
func indexSuite(t *testing.T, o opener) {
	ctx := context.Background()
	newDB := func(t *testing.T) *DB { return o.open(t, o.fresh(t)) }
	put := func(t *testing.T, db *DB, vs ...Version) {
		t.Helper()
		for _, v := range vs {
			if err := db.PutVersion(ctx, v); err != nil {
				t.Fatalf("PutVersion(%s): %v", v.ID, err)
			}
		}
	}
	versions := func(t *testing.T, db *DB, dataset string) []Version {
		t.Helper()
		vs, err := db.Versions(ctx, dataset)
		if err != nil {
			t.Fatalf("Versions(%q): %v", dataset, err)
		}
		return vs
	}
	datasets := func(t *testing.T, db *DB) []Dataset {
		t.Helper()
		ds, err := db.Datasets(ctx)
		if err != nil {
			t.Fatalf("Datasets: %v", err)
		}
		return ds
	}
	ver := func(id, dataset string, at time.Duration) Version {
		return Version{ID: id, Dataset: dataset, Time: t0.Add(at), User: "alice", UID: 1000, Host: "h1", Files: 3, Bytes: 300, Stored: 120}
	}

	t.Run("VersionsAndDatasets", func(t *testing.T) {
		db := newDB(t)
		if vs, ds := versions(t, db, ""), datasets(t, db); len(vs) != 0 || len(ds) != 0 {
			t.Fatalf("empty catalog lists %v and %v", vs, ds)
		}
		full := Version{
			ID: "v1", Dataset: "home", Parent: "v0", Stage: "pre-upgrade", Message: "nightly\nwith a second line",
			User: "alice", UID: 1<<32 - 1, Host: "db-1", Time: t0.Add(123456789 * time.Nanosecond).In(time.FixedZone("X", 3600)),
			Files: 1<<63 + 5, Bytes: 1<<64 - 1, Stored: 42,
		}
		v2, v3, d1 := ver("v2", "home", 2*time.Hour), ver("v3", "home", 2*time.Hour), ver("d1", "db", -time.Hour)
		put(t, db, v3, full, d1, v2)
		if diff := cmp.Diff([]Version{v2, v3, full}, versions(t, db, "home")); diff != "" {
			t.Errorf("Versions(home), newest first then by id (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]Version{v2, v3, full, d1}, versions(t, db, "")); diff != "" {
			t.Errorf("Versions(all) (-want +got):\n%s", diff)
		}
		if vs := versions(t, db, "nope"); len(vs) != 0 {
			t.Errorf("Versions(nope) = %v", vs)
		}
		want := []Dataset{
			{Name: "db", Created: d1.Time, Versions: 1, Latest: "d1", LatestTime: d1.Time},
			{Name: "home", Created: full.Time, Versions: 3, Latest: "v2", LatestTime: v2.Time},
		}
		if diff := cmp.Diff(want, datasets(t, db)); diff != "" {
			t.Errorf("Datasets (-want +got):\n%s", diff)
		}

		// An older version arriving late moves Created back.
		v0 := ver("v0", "home", -3*time.Hour)
		put(t, db, v0)
		want[1].Created, want[1].Versions = v0.Time, 4
		if diff := cmp.Diff(want, datasets(t, db)); diff != "" {
			t.Errorf("Datasets after an older version (-want +got):\n%s", diff)
		}

		for _, id := range []string{"v2", "absent"} {
			if err := db.DeleteVersion(ctx, id); err != nil {
				t.Fatalf("DeleteVersion(%s): %v", id, err)
			}
		}
		want[1].Versions, want[1].Latest, want[1].LatestTime = 3, "v3", v3.Time
		if diff := cmp.Diff(want, datasets(t, db)); diff != "" {
			t.Errorf("Datasets after deleting v2 (-want +got):\n%s", diff)
		}
		for _, id := range []string{"v0", "v1", "v3"} {
			if err := db.DeleteVersion(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
		want[1].Versions, want[1].Latest, want[1].LatestTime = 0, "", time.Time{}
		if diff := cmp.Diff(want, datasets(t, db)); diff != "" {
			t.Errorf("Datasets after deleting every home version: the row stays, empty (-want +got):\n%s", diff)
		}
	})

	t.Run("PutVersionIdempotent", func(t *testing.T) {
		db := newDB(t)
		v := ver("v1", "home", 0)
		put(t, db, v, v, v)
		if diff := cmp.Diff([]Version{v}, versions(t, db, "")); diff != "" {
			t.Fatalf("after putting v1 three times (-want +got):\n%s", diff)
		}
		if ds := datasets(t, db); len(ds) != 1 || ds[0].Versions != 1 {
			t.Fatalf("Datasets = %+v", ds)
		}
		// The vault is the truth: putting a version again rewrites its row.
		v.Message, v.Stored = "corrected", 99
		put(t, db, v)
		if diff := cmp.Diff([]Version{v}, versions(t, db, "")); diff != "" {
			t.Fatalf("after putting v1 again, changed (-want +got):\n%s", diff)
		}
	})

	t.Run("SyncVersions", func(t *testing.T) {
		db := newDB(t)
		a, b, c := ver("a", "home", 0), ver("b", "home", time.Hour), ver("c", "db", 2*time.Hour)
		put(t, db, a, b, c)
		c.Message = "changed in the vault"
		d, e := ver("d", "home", 3*time.Hour), ver("e", "new", 4*time.Hour)
		sync := func(all []Version, wantAdded, wantRemoved int) {
			t.Helper()
			added, removed, err := db.SyncVersions(ctx, all)
			if err != nil || added != wantAdded || removed != wantRemoved {
				t.Fatalf("SyncVersions = %d added, %d removed, %v; want %d, %d", added, removed, err, wantAdded, wantRemoved)
			}
		}
		sync([]Version{e, c, b, d, d}, 2, 1)
		if diff := cmp.Diff([]Version{e, d, c, b}, versions(t, db, "")); diff != "" {
			t.Fatalf("versions after sync (-want +got):\n%s", diff)
		}
		if ds := datasets(t, db); len(ds) != 3 || ds[2].Name != "new" || ds[2].Latest != "e" || ds[1].Versions != 2 {
			t.Fatalf("Datasets after sync = %+v", ds)
		}
		sync([]Version{b, c, d, e}, 0, 0)

		// One bad version refuses the whole sync.
		if _, _, err := db.SyncVersions(ctx, []Version{a, {ID: "", Dataset: "home", Time: t0}}); err == nil {
			t.Fatal("SyncVersions accepted a version without an id")
		}
		if vs := versions(t, db, ""); len(vs) != 4 {
			t.Fatalf("a refused sync changed the table: %v", vs)
		}

		sync(nil, 0, 4)
		if vs := versions(t, db, ""); len(vs) != 0 {
			t.Fatalf("versions after syncing to nothing: %v", vs)
		}
		if ds := datasets(t, db); len(ds) != 3 || ds[0].Versions != 0 {
			t.Fatalf("dataset rows must stay: %+v", ds)
		}
	})

	t.Run("RefCompareAndSwap", func(t *testing.T) {
		db := newDB(t)
		if _, err := db.Ref(ctx, "home", "main"); !errors.Is(err, ErrNoRef) {
			t.Fatalf("Ref of a missing ref: %v, want ErrNoRef", err)
		}
		before := time.Now()
		r1, err := db.SetRef(ctx, "home", "main", "v1", 0)
		if err != nil || r1.Gen != 1 || r1.Target != "v1" || r1.Updated.Before(before.Add(-time.Second)) {
			t.Fatalf("SetRef create = %+v, %v", r1, err)
		}
		got, err := db.Ref(ctx, "home", "main")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(r1, got); diff != "" {
			t.Fatalf("Ref reads back other than SetRef returned (-set +read):\n%s", diff)
		}
		_, err = db.SetRef(ctx, "home", "main", "v9", 0)
		if !errors.Is(err, ErrRefMoved) || !strings.Contains(err.Error(), "expected no ref, found generation 1") {
			t.Fatalf("creating an existing ref: %v, want ErrRefMoved naming both generations", err)
		}
		r2, err := db.SetRef(ctx, "home", "main", "v2", 1)
		if err != nil || r2.Gen != 2 || r2.Target != "v2" {
			t.Fatalf("SetRef at gen 1 = %+v, %v", r2, err)
		}
		for _, stale := range []int64{1, 3, 7} {
			_, err := db.SetRef(ctx, "home", "main", "v9", stale)
			if !errors.Is(err, ErrRefMoved) || !strings.Contains(err.Error(), fmt.Sprintf("expected generation %d, found generation 2", stale)) {
				t.Fatalf("SetRef at stale gen %d: %v", stale, err)
			}
		}
		if got, _ := db.Ref(ctx, "home", "main"); got.Target != "v2" || got.Gen != 2 {
			t.Fatalf("refused SetRefs moved the ref: %+v", got)
		}
		// Same name in another dataset is another ref.
		if _, err := db.SetRef(ctx, "db", "main", "d1", 0); err != nil {
			t.Fatal(err)
		}
		if _, err := db.SetRef(ctx, "home", "release", "v1", 0); err != nil {
			t.Fatal(err)
		}
		names := func(rs []Ref, err error) string {
			if err != nil {
				t.Fatalf("Refs: %v", err)
			}
			var s []string
			for _, r := range rs {
				s = append(s, fmt.Sprintf("%s/%s=%s@%d", r.Dataset, r.Name, r.Target, r.Gen))
			}
			return strings.Join(s, " ")
		}
		if got, want := names(db.Refs(ctx, "home")), "home/main=v2@2 home/release=v1@1"; got != want {
			t.Errorf("Refs(home) = %s, want %s", got, want)
		}
		if got, want := names(db.Refs(ctx, "")), "db/main=d1@1 home/main=v2@2 home/release=v1@1"; got != want {
			t.Errorf("Refs(all) = %s, want %s", got, want)
		}

		if err := db.DeleteRef(ctx, "home", "main", 1); !errors.Is(err, ErrRefMoved) {
			t.Fatalf("DeleteRef at stale gen: %v, want ErrRefMoved", err)
		}
		if err := db.DeleteRef(ctx, "home", "main", 2); err != nil {
			t.Fatalf("DeleteRef: %v", err)
		}
		if _, err := db.Ref(ctx, "home", "main"); !errors.Is(err, ErrNoRef) {
			t.Fatalf("Ref after delete: %v", err)
		}
		if err := db.DeleteRef(ctx, "home", "main", 2); !errors.Is(err, ErrNoRef) {
			t.Fatalf("deleting a deleted ref: %v, want ErrNoRef", err)
		}
		if _, err := db.SetRef(ctx, "home", "main", "v3", 2); !errors.Is(err, ErrRefMoved) || !strings.Contains(err.Error(), "found no ref") {
			t.Fatalf("SetRef of a deleted ref: %v, want ErrRefMoved", err)
		}
		if r, err := db.SetRef(ctx, "home", "main", "v3", 0); err != nil || r.Gen != 1 {
			t.Fatalf("recreating a deleted ref = %+v, %v", r, err)
		}
	})

	t.Run("RefRaceAcrossHandles", func(t *testing.T) {
		dsn := o.fresh(t)
		handles := []*DB{o.open(t, dsn), o.open(t, dsn)} // like two hosts
		const racers = 16
		// race runs op on every racer at once and returns the errors.
		race := func(op func(db *DB, i int) error) []error {
			errs := make([]error, racers)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range racers {
				wg.Go(func() {
					<-start
					errs[i] = op(handles[i%len(handles)], i)
				})
			}
			close(start)
			wg.Wait()
			return errs
		}
		// winner checks exactly one racer succeeded and every other one
		// failed with want.
		winner := func(errs []error, want error) int {
			t.Helper()
			won := -1
			for i, err := range errs {
				switch {
				case err == nil && won >= 0:
					t.Fatalf("racers %d and %d both succeeded", won, i)
				case err == nil:
					won = i
				case !errors.Is(err, want):
					t.Fatalf("racer %d: %v, want %v", i, err, want)
				}
			}
			if won < 0 {
				t.Fatalf("no racer succeeded: %v", errs[0])
			}
			return won
		}
		for gen := int64(0); gen < 3; gen++ {
			errs := race(func(db *DB, i int) error {
				_, err := db.SetRef(ctx, "home", "main", fmt.Sprintf("t%d", i), gen)
				return err
			})
			won := winner(errs, ErrRefMoved)
			got, err := handles[1].Ref(ctx, "home", "main")
			if err != nil || got.Gen != gen+1 || got.Target != fmt.Sprintf("t%d", won) {
				t.Fatalf("after race at gen %d won by %d: %+v, %v", gen, won, got, err)
			}
		}
		winner(race(func(db *DB, _ int) error { return db.DeleteRef(ctx, "home", "main", 3) }), ErrNoRef)
		if _, err := handles[0].Ref(ctx, "home", "main"); !errors.Is(err, ErrNoRef) {
			t.Fatalf("Ref after racing deletes: %v", err)
		}
	})

	t.Run("Principals", func(t *testing.T) {
		db := newDB(t)
		uid := func(u uint32) *uint32 { return &u }
		touch := func(p Principal, at time.Duration) {
			t.Helper()
			if err := db.TouchPrincipal(ctx, p, t0.Add(at)); err != nil {
				t.Fatalf("TouchPrincipal(%+v): %v", p, err)
			}
		}
		alice := Principal{Kind: "os", Name: "alice", UID: uid(1000)}
		touch(alice, time.Hour)
		touch(Principal{Kind: "api", Name: "ci-token"}, 2*time.Hour)
		touch(alice, 3*time.Hour)
		touch(Principal{Kind: "os", Name: "alice"}, 2*time.Hour) // no uid: keeps 1000
		touch(Principal{Kind: "os", Name: "ci-token", UID: uid(0)}, 0)
		want := []Principal{
			{Kind: "api", Name: "ci-token", FirstSeen: t0.Add(2 * time.Hour), LastSeen: t0.Add(2 * time.Hour), Actions: 1},
			{Kind: "os", Name: "alice", UID: uid(1000), FirstSeen: t0.Add(time.Hour), LastSeen: t0.Add(3 * time.Hour), Actions: 3},
			{Kind: "os", Name: "ci-token", UID: uid(0), FirstSeen: t0, LastSeen: t0, Actions: 1},
		}
		got, err := db.Principals(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("Principals (-want +got):\n%s", diff)
		}

		// Concurrent touches all count; a new uid replaces the old; an
		// action replayed from before FirstSeen moves it back.
		var wg sync.WaitGroup
		errs := make(chan error, 20)
		for i := range 20 {
			wg.Go(func() {
				errs <- db.TouchPrincipal(ctx, Principal{Kind: "os", Name: "alice", UID: uid(1001)}, t0.Add(time.Duration(i)*time.Minute))
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		want[1].UID, want[1].FirstSeen, want[1].Actions = uid(1001), t0, 23
		if got, _ = db.Principals(ctx); !cmp.Equal(want, got) {
			t.Fatalf("Principals after concurrent touches (-want +got):\n%s", cmp.Diff(want, got))
		}
	})

	t.Run("BadNamesRejected", func(t *testing.T) {
		db := newDB(t)
		long := strings.Repeat("n", 256)
		good := ver("v1", "home", 0)
		with := func(f func(v *Version)) Version {
			v := good
			f(&v)
			return v
		}
		cases := []struct {
			name string
			err  error
			want string
		}{
			{"version without id", db.PutVersion(ctx, with(func(v *Version) { v.ID = "" })), "empty version id"},
			{"version without dataset", db.PutVersion(ctx, with(func(v *Version) { v.Dataset = "" })), "empty dataset name"},
			{"dataset with newline", db.PutVersion(ctx, with(func(v *Version) { v.Dataset = "a\nb" })), "control character"},
			{"dataset too long", db.PutVersion(ctx, with(func(v *Version) { v.Dataset = long })), "limit is 255"},
			{"dataset not UTF-8", db.PutVersion(ctx, with(func(v *Version) { v.Dataset = "caf\xe9" })), "not valid UTF-8"},
			{"message with NUL", db.PutVersion(ctx, with(func(v *Version) { v.Message = "a\x00b" })), "without NUL"},
			{"version without time", db.PutVersion(ctx, with(func(v *Version) { v.Time = time.Time{} })), "time is not set"},
			{"version time out of range", db.PutVersion(ctx, with(func(v *Version) { v.Time = time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC) })), "outside the years"},
			{"ref in empty dataset", setRef(db, "", "main", "v1", 0), "empty dataset name"},
			{"empty ref name", setRef(db, "home", "", "v1", 0), "empty ref name"},
			{"ref name with tab", setRef(db, "home", "a\tb", "v1", 0), "control character"},
			{"ref name with DEL", setRef(db, "home", "a\x7f", "v1", 0), "control character"},
			{"ref name with NUL", setRef(db, "home", "a\x00", "v1", 0), "control character"},
			{"ref name too long", setRef(db, "home", long, "v1", 0), "limit is 255"},
			{"empty ref target", setRef(db, "home", "main", "", 0), "empty ref target"},
			{"negative generation", setRef(db, "home", "main", "v1", -1), "negative"},
			{"read bad ref", func() error { _, err := db.Ref(ctx, "home", "a\nb"); return err }(), "control character"},
			{"delete bad ref", db.DeleteRef(ctx, "home", "", 1), "empty ref name"},
			{"principal kind", db.TouchPrincipal(ctx, Principal{Kind: "user", Name: "alice"}, t0), `neither "os" nor "api"`},
			{"empty principal", db.TouchPrincipal(ctx, Principal{Kind: "os"}, t0), "empty principal name"},
			{"principal without time", db.TouchPrincipal(ctx, Principal{Kind: "os", Name: "alice"}, time.Time{}), "time is not set"},
		}
		for _, c := range cases {
			if c.err == nil || !strings.HasPrefix(c.err.Error(), "catalog: ") || !strings.Contains(c.err.Error(), c.want) {
				t.Errorf("%s: error %v, want one starting \"catalog: \" and saying %q", c.name, c.err, c.want)
			}
		}
		if vs, ds := versions(t, db, ""), datasets(t, db); len(vs) != 0 || len(ds) != 0 {
			t.Errorf("refused versions were written: %v %v", vs, ds)
		}
		if rs, err := db.Refs(ctx, ""); err != nil || len(rs) != 0 {
			t.Errorf("refused refs were written: %v %v", rs, err)
		}
		if ps, err := db.Principals(ctx); err != nil || len(ps) != 0 {
			t.Errorf("refused principals were written: %v %v", ps, err)
		}
		// The limits themselves are fine.
		edge := strings.Repeat("é", 127) + "n" // 255 bytes
		put(t, db, with(func(v *Version) { v.Dataset = edge }))
		if _, err := db.SetRef(ctx, edge, "zweig/ünïcode-"+strings.Repeat("x", 255-len("zweig/ünïcode-")), "v1", 0); err != nil {
			t.Errorf("SetRef with 255-byte names: %v", err)
		}
	})
}

func setRef(db *DB, dataset, name, target string, gen int64) error {
	_, err := db.SetRef(context.Background(), dataset, name, target, gen)
	return err
}
