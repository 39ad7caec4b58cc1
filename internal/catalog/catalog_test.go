package catalog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/custodyhq/custody/internal/catalog/pgtest"
	"github.com/custodyhq/custody/internal/ledger"
)

// opener opens a catalog; fresh returns a new empty location and reopen
// opens the same location again (as another process would).
type opener struct {
	fresh func(t *testing.T) string
}

func (o opener) open(t *testing.T, dsn string) *DB {
	t.Helper()
	db, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestSQLite(t *testing.T) {
	runSuite(t, SQLite, opener{fresh: func(t *testing.T) string {
		return filepath.Join(t.TempDir(), "catalog.db")
	}})
}

func TestPostgres(t *testing.T) {
	server := pgtest.Server(t)
	runSuite(t, Postgres, opener{fresh: func(t *testing.T) string {
		return pgtest.NewDatabase(t, server)
	}})
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func entry(i int, dataset, path, user, kind string) []byte {
	uid := uint32(1000 + i%3)
	e := ledger.Entry{
		Time:    t0.Add(time.Duration(i) * time.Minute),
		Kind:    kind,
		Actor:   ledger.Actor{UID: &uid, User: user, PID: 4000 + i, Exe: "/usr/bin/custody"},
		Dataset: dataset,
		Version: fmt.Sprintf("v%d", i),
		Path:    path,
		Outcome: "ok",
		Detail:  map[string]string{"bytes": fmt.Sprint(i * 4096)},
	}
	b, err := e.Leaf()
	if err != nil {
		panic(err)
	}
	return b
}

func records(from, n int) [][]byte {
	var out [][]byte
	for i := from; i < from+n; i++ {
		out = append(out, entry(i, fmt.Sprintf("ds%d", i%2), fmt.Sprintf("/data/dir%d/file%d", i%3, i), fmt.Sprintf("user%d", i%4), []string{"snapshot", "restore", "file.modify"}[i%3]))
	}
	return out
}

func runSuite(t *testing.T, driver string, o opener) {
	ctx := context.Background()
	newDB := func(t *testing.T) *DB {
		db := o.open(t, o.fresh(t))
		if db.Driver() != driver {
			t.Fatalf("Driver() = %q, want %q", db.Driver(), driver)
		}
		return db
	}

	t.Run("RoundTrip", func(t *testing.T) {
		db := newDB(t)
		log := ledger.New(db)
		mem := &ledger.MemStore{}
		mlog := ledger.New(mem)
		recs := records(0, 1234)
		for _, batch := range [][][]byte{recs[:1], recs[1:7], recs[7:1000], recs[1000:]} {
			if _, err := log.Append(ctx, batch); err != nil {
				t.Fatal(err)
			}
			if _, err := mlog.Append(ctx, batch); err != nil {
				t.Fatal(err)
			}
			got, err := log.Tree(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := mlog.Tree(ctx)
			if got != want {
				t.Fatalf("tree %v, MemStore gives %v", got, want)
			}
		}
		if n, _ := db.Size(ctx); n != 1234 {
			t.Fatalf("Size = %d", n)
		}
		if err := ledger.Verify(ctx, db.Records(ctx, 0), db, nil); err != nil {
			t.Fatalf("Verify: %v", err)
		}
		var i int64 = 1100
		err := db.Records(ctx, 1100)(func(idx int64, rec []byte) bool {
			if idx != i || !bytes.Equal(rec, recs[i]) {
				t.Fatalf("record %d: got index %d %q", i, idx, rec)
			}
			i++
			return true
		})
		if err != nil || i != 1234 {
			t.Fatalf("Records: %v, ended at %d", err, i)
		}
		p, err := log.ProveInclusion(17, 1234)
		if err != nil {
			t.Fatal(err)
		}
		tree, _ := log.Tree(ctx)
		if err := tlog.CheckRecord(p, 1234, tree.Hash, 17, tlog.RecordHash(recs[17])); err != nil {
			t.Fatalf("inclusion proof: %v", err)
		}
		// A record that is not a ledger entry still appends.
		if _, err := log.Append(ctx, [][]byte{[]byte("not json"), {}}); err != nil {
			t.Fatal(err)
		}
		if err := ledger.Verify(ctx, db.Records(ctx, 0), db, nil); err != nil {
			t.Fatalf("Verify: %v", err)
		}
	})

	t.Run("Conflict", func(t *testing.T) {
		db := newDB(t)
		recs := records(0, 3)
		hs, err := storedHashes(0, recs)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Append(ctx, 0, recs[:2], hs[:2]); err != nil {
			t.Fatal(err)
		}
		for _, stale := range []int64{0, 1, 5} {
			err := db.Append(ctx, stale, recs[2:], hs[2:])
			if !errors.Is(err, ledger.ErrConflict) {
				t.Fatalf("append at stale size %d: %v, want ErrConflict", stale, err)
			}
		}
		if n, _ := db.Size(ctx); n != 2 {
			t.Fatalf("Size = %d after refused appends", n)
		}
	})

	t.Run("ConcurrentAppenders", func(t *testing.T) {
		dsn := o.fresh(t)
		const writers, batches, per = 4, 8, 50
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for w := range writers {
			db := o.open(t, dsn) // its own handle and connections, like another process
			wg.Add(1)
			go func() {
				defer wg.Done()
				log := ledger.New(db)
				for b := range batches {
					if _, err := log.Append(ctx, records((w*batches+b)*per, per)); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		db := o.open(t, dsn)
		if n, _ := db.Size(ctx); n != writers*batches*per {
			t.Fatalf("Size = %d, want %d", n, writers*batches*per)
		}
		var count int64
		db.Records(ctx, 0)(func(i int64, _ []byte) bool {
			if i != count {
				t.Fatalf("gap: record %d where %d expected", i, count)
			}
			count++
			return true
		})
		if count != writers*batches*per {
			t.Fatalf("%d records", count)
		}
		if err := ledger.Verify(ctx, db.Records(ctx, 0), db, nil); err != nil {
			t.Fatalf("Verify: %v", err)
		}
	})

	t.Run("TamperEdited", func(t *testing.T) {
		db := newDB(t)
		if _, err := ledger.New(db).Append(ctx, records(0, 100)); err != nil {
			t.Fatal(err)
		}
		forged := entry(42, "ds0", "/etc/shadow", "mallory", "restore")
		if _, err := db.db.ExecContext(ctx, db.q(`UPDATE ledger SET record = $1 WHERE idx = 42`), forged); err != nil {
			t.Fatal(err)
		}
		err := ledger.Verify(ctx, db.Records(ctx, 0), db, nil)
		if !errors.Is(err, ledger.ErrTampered) || !strings.Contains(err.Error(), "record 42 ") {
			t.Fatalf("Verify after editing record 42: %v", err)
		}
	})

	t.Run("TamperDeleted", func(t *testing.T) {
		for _, victim := range []int64{0, 57, 99} {
			db := newDB(t)
			if _, err := ledger.New(db).Append(ctx, records(0, 100)); err != nil {
				t.Fatal(err)
			}
			if _, err := db.db.ExecContext(ctx, db.q(`DELETE FROM ledger WHERE idx = $1`), victim); err != nil {
				t.Fatal(err)
			}
			err := ledger.Verify(ctx, db.Records(ctx, 0), db, nil)
			if !errors.Is(err, ledger.ErrTampered) {
				t.Fatalf("Verify after deleting record %d: %v", victim, err)
			}
			if victim < 99 && !strings.Contains(err.Error(), fmt.Sprintf("record %d ", victim)) {
				t.Fatalf("Verify after deleting record %d names another: %v", victim, err)
			}
		}
	})

	t.Run("TamperReordered", func(t *testing.T) {
		db := newDB(t)
		if _, err := ledger.New(db).Append(ctx, records(0, 100)); err != nil {
			t.Fatal(err)
		}
		// Swap the contents of rows 7 and 8, each keeping its index.
		if _, err := db.db.ExecContext(ctx, db.q(`UPDATE ledger SET record = CASE idx WHEN 7 THEN (SELECT record FROM ledger WHERE idx = 8) ELSE (SELECT record FROM ledger WHERE idx = 7) END WHERE idx IN (7, 8)`)); err != nil {
			t.Fatal(err)
		}
		err := ledger.Verify(ctx, db.Records(ctx, 0), db, nil)
		if !errors.Is(err, ledger.ErrTampered) || !strings.Contains(err.Error(), "record 7 ") {
			t.Fatalf("Verify after swapping records 7 and 8: %v", err)
		}
	})

	t.Run("TamperInserted", func(t *testing.T) {
		db := newDB(t)
		if _, err := ledger.New(db).Append(ctx, records(0, 100)); err != nil {
			t.Fatal(err)
		}
		// Make room at 50 (highest first, so the key stays unique) and
		// put a forged record there with plausible hashes copied from 50.
		for i := int64(99); i >= 50; i-- {
			if _, err := db.db.ExecContext(ctx, db.q(`UPDATE ledger SET idx = $1 WHERE idx = $2`), i+1, i); err != nil {
				t.Fatal(err)
			}
		}
		forged := entry(50, "ds0", "/data/planted", "mallory", "snapshot")
		if _, err := db.db.ExecContext(ctx, db.q(`INSERT INTO ledger (idx, record, hashes, time, kind, dataset, path, user_name) SELECT 50, $1, hashes, time, kind, dataset, path, user_name FROM ledger WHERE idx = 51`), forged); err != nil {
			t.Fatal(err)
		}
		if _, err := db.db.ExecContext(ctx, `UPDATE ledger_head SET size = size + 1`); err != nil {
			t.Fatal(err)
		}
		err := ledger.Verify(ctx, db.Records(ctx, 0), db, nil)
		if !errors.Is(err, ledger.ErrTampered) || !strings.Contains(err.Error(), "record 50 ") {
			t.Fatalf("Verify after inserting at 50: %v", err)
		}
	})

	t.Run("Search", func(t *testing.T) {
		db := newDB(t)
		var recs [][]byte
		add := func(dataset, path, user, kind string) {
			recs = append(recs, entry(len(recs), dataset, path, user, kind))
		}
		add("home", "/home/alice", "alice", "snapshot")              // 0
		add("home", "/home/alice/notes.txt", "alice", "file.modify") // 1
		add("home", "/home/alice-old/x", "bob", "file.modify")       // 2
		add("home", "/home/alice0", "bob", "file.modify")            // 3
		add("db", "/var/lib/pg", "root", "snapshot")                 // 4
		add("home", "/home/alice/a/b/c", "alice", "restore")         // 5
		add("db", "/var/lib/pg/base/1", "postgres", "file.modify")   // 6
		recs = append(recs, []byte("garbage"))                       // 7
		add("home", "/home/bob", "bob", "forget")                    // 8
		if _, err := ledger.New(db).Append(ctx, recs); err != nil {
			t.Fatal(err)
		}
		cases := []struct {
			q    Query
			want []int64
		}{
			{Query{After: -1}, []int64{0, 1, 2, 3, 4, 5, 6, 7, 8}},
			{Query{Dataset: "db", After: -1}, []int64{4, 6}},
			{Query{Path: "/home/alice", After: -1}, []int64{0, 1, 5}},
			{Query{Path: "/home/alice/", After: -1}, []int64{0, 1, 5}},
			{Query{Path: "/home/alice/a", After: -1}, []int64{5}},
			{Query{Path: "/var", After: -1}, []int64{4, 6}},
			{Query{Path: "/", After: -1}, []int64{0, 1, 2, 3, 4, 5, 6, 8}},
			{Query{Path: "/home/alice/notes.txt", After: -1}, []int64{1}},
			{Query{Path: "/nowhere", After: -1}, nil},
			{Query{User: "bob", After: -1}, []int64{2, 3, 8}},
			{Query{Kind: "file.modify", After: -1}, []int64{1, 2, 3, 6}},
			{Query{Kind: "file.modify", User: "bob", Dataset: "home", After: -1}, []int64{2, 3}},
			{Query{Since: t0.Add(2 * time.Minute), Until: t0.Add(5 * time.Minute), After: -1}, []int64{2, 3, 4}},
			{Query{Since: t0.Add(6 * time.Minute), After: -1}, []int64{6, 8}},
			{Query{After: 5}, []int64{6, 7, 8}},
			{Query{After: 0, Limit: 2}, []int64{1, 2}},
			{Query{Path: "/home", After: 1, Limit: 2}, []int64{2, 3}},
			{Query{User: "nobody", After: -1}, nil},
		}
		for _, c := range cases {
			hits, err := db.Search(ctx, c.q)
			if err != nil {
				t.Fatalf("Search(%+v): %v", c.q, err)
			}
			var got []int64
			for _, h := range hits {
				got = append(got, h.Index)
				if !bytes.Equal(h.Record, recs[h.Index]) {
					t.Fatalf("Search(%+v): record %d is %q", c.q, h.Index, h.Record)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("Search(%+v) = %v, want %v", c.q, got, c.want)
			}
		}
	})

	t.Run("Checkpoints", func(t *testing.T) {
		db := newDB(t)
		if _, _, err := db.LatestCheckpoint(ctx); !errors.Is(err, ErrNoCheckpoint) {
			t.Fatalf("LatestCheckpoint on empty: %v", err)
		}
		for _, c := range []struct {
			n int64
			s string
		}{{10, "ten"}, {30, "thirty"}, {20, "twenty"}, {30, "thirty again"}} {
			if err := db.SaveCheckpoint(ctx, c.n, []byte(c.s)); err != nil {
				t.Fatal(err)
			}
		}
		n, s, err := db.LatestCheckpoint(ctx)
		if err != nil || n != 30 || string(s) != "thirty" {
			t.Fatalf("LatestCheckpoint = %d %q %v", n, s, err)
		}
	})

	t.Run("Migrations", func(t *testing.T) {
		dsn := o.fresh(t)
		db := o.open(t, dsn)
		if db.applied != SchemaVersion() {
			t.Fatalf("first open applied %d migrations, want %d", db.applied, SchemaVersion())
		}
		if _, err := ledger.New(db).Append(ctx, records(0, 5)); err != nil {
			t.Fatal(err)
		}
		db2 := o.open(t, dsn)
		if db2.applied != 0 {
			t.Fatalf("reopen applied %d migrations", db2.applied)
		}
		var rows int
		if err := db2.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_version`).Scan(&rows); err != nil || rows != SchemaVersion() {
			t.Fatalf("schema_version has %d rows (%v)", rows, err)
		}
		if n, _ := db2.Size(ctx); n != 5 {
			t.Fatalf("Size after reopen = %d", n)
		}
		if _, err := db2.db.ExecContext(ctx, db2.q(`INSERT INTO schema_version (version, applied_at) VALUES ($1, 0)`), SchemaVersion()+1); err != nil {
			t.Fatal(err)
		}
		db3, err := Open(ctx, dsn)
		if err == nil {
			db3.Close()
			t.Fatal("Open accepted a schema newer than this code")
		}
		if !errors.Is(err, ErrSchemaTooNew) {
			t.Fatalf("Open of newer schema: %v", err)
		}
		t.Logf("newer schema: %v", err)
	})

	t.Run("Index", func(t *testing.T) { indexSuite(t, o) })
	t.Run("Gates", func(t *testing.T) { gatesSuite(t, o) })
	t.Run("Offsite", func(t *testing.T) { offsiteSuite(t, o) })
}

func storedHashes(size int64, recs [][]byte) ([][]tlog.Hash, error) {
	mem := &ledger.MemStore{}
	if _, err := ledger.New(mem).Append(context.Background(), recs); err != nil {
		return nil, err
	}
	var out [][]tlog.Hash
	for i := range recs {
		n := size + int64(i)
		lo := tlog.StoredHashIndex(0, n)
		hi := tlog.StoredHashIndex(0, n+1)
		var idx []int64
		for x := lo; x < hi; x++ {
			idx = append(idx, x)
		}
		hs, err := mem.ReadHashes(idx)
		if err != nil {
			return nil, err
		}
		out = append(out, hs)
	}
	return out, nil
}

func TestSQLitePrefix(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(context.Background(), "sqlite:"+filepath.Join(dir, "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if db.Driver() != SQLite {
		t.Fatal(db.Driver())
	}
	var mode string
	if err := db.db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q %v", mode, err)
	}
}
