package report

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/audit"
	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/ledger"
	"github.com/custodyhq/custody/internal/testkit"
	"github.com/custodyhq/custody/internal/vaulttest"
)

func TestCustodyReportPutsEachChangeBeforeTheVersionThatHoldsIt(t *testing.T) {
	ctx := context.Background()
	v, _ := vaulttest.New(t)
	db, err := catalog.Open(ctx, filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rec, err := audit.New(v, db)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	event := func(user string, uid uint32, exe, path, kind string, count int) {
		t.Helper()
		e := ledger.Entry{Time: time.Now().UTC(), Kind: "file." + kind, Dataset: "raw", Path: filepath.Join(dir, path), Outcome: "ok",
			Actor: ledger.Actor{UID: &uid, User: user, PID: 42, Exe: exe}}
		if user == "" {
			e.Actor = ledger.Actor{}
		}
		if count > 1 {
			e.Detail = map[string]string{"count": "3"}
		}
		if _, err := rec.Record(ctx, e); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	testkit.WriteFiles(t, dir, map[string][]byte{"a.csv": []byte("1")})
	event("alice", 1001, "/usr/bin/python3", "a.csv", "create", 1)
	v1 := vaulttest.Snapshot(t, v, "raw", dir)
	time.Sleep(2 * time.Millisecond)
	event("bob", 1002, "/usr/bin/rsync", "a.csv", "modify", 3)
	event("bob", 1002, "/usr/bin/vim", "b.csv", "create", 1)
	v2 := vaulttest.Snapshot(t, v, "raw", dir)
	time.Sleep(2 * time.Millisecond)
	event("mallory", 1003, "/tmp/x", "a.csv", "delete", 1)
	event("", 0, "", "c.csv", "rescan", 1)

	rep, err := Build(ctx, v, db, Options{Dataset: "raw"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Periods) != 3 || rep.Periods[0].Version.ID != v1.ID.String() || rep.Periods[1].Version.ID != v2.ID.String() || rep.Periods[2].Version != nil {
		t.Fatalf("periods: %+v", rep.Periods)
	}
	who := func(p Period) string {
		var s []string
		for _, x := range p.People {
			s = append(s, x.User)
		}
		return strings.Join(s, ",")
	}
	if got := who(rep.Periods[0]); got != "alice" {
		t.Errorf("before v1: %s", got)
	}
	bob := rep.Periods[1].People
	if len(bob) != 1 || bob[0].User != "bob" || bob[0].Events != 4 || bob[0].Kinds["file.modify"] != 3 || len(bob[0].Processes) != 2 || len(bob[0].Paths) != 2 {
		t.Errorf("between v1 and v2: %+v", bob)
	}
	if got := who(rep.Periods[2]); got != "mallory,unknown" || rep.Unattributed != 1 {
		t.Errorf("since v2: %s, unattributed %d", got, rep.Unattributed)
	}

	var text, page bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{v1.ID.String()[:12], "bob", "rsync,vim", "modify 3", "mallory", "since the newest version"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
	if err := rep.WriteHTML(&page); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(page.String(), "<td>mallory</td>") || strings.Contains(page.String(), "<script") {
		t.Errorf("HTML report:\n%s", page.String())
	}
}

func TestCustodyReportEscapesHostileNames(t *testing.T) {
	rep := &Custody{Subject: "<script>alert(1)</script>", Periods: []Period{{People: []Person{{User: "<b>x</b>", Paths: []string{"/d/<img src=x onerror=alert(1)>"}, Kinds: map[string]int{}}}}}}
	var page bytes.Buffer
	if err := rep.WriteHTML(&page); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(page.String(), "<script>alert") || strings.Contains(page.String(), "<img src") || strings.Contains(page.String(), "<b>x</b>") {
		t.Fatalf("unescaped:\n%s", page.String())
	}
}
