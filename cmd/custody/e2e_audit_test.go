package main_test

import (
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/ncruces/go-sqlite3/driver"
	_ "github.com/ncruces/go-sqlite3/embed"
)

// auditRows is `audit log --json` decoded.
type auditRow struct {
	Index   int64  `json:"index"`
	Kind    string `json:"kind"`
	Dataset string `json:"dataset"`
	Outcome string `json:"outcome"`
	Actor   struct {
		User string `json:"user"`
	} `json:"actor"`
}

func TestAuditTrailRecordsActionsAndCatchesTampering(t *testing.T) {
	e := newVault(t)
	src := filepath.Join(t.TempDir(), "raw")
	writeFile(t, filepath.Join(src, "a.txt"), []byte("first"))
	e.snapshot(src)
	e.fails(1, []string{"no such version"}, "restore", "deadbeef00", "--target", t.TempDir())
	writeFile(t, filepath.Join(src, "a.txt"), []byte("second"))
	e.snapshot(src)

	var rows []auditRow
	e.okJSON(&rows, "audit", "log", "--json")
	kinds := []string{}
	for _, r := range rows {
		kinds = append(kinds, r.Kind+":"+strings.SplitN(r.Outcome, ":", 2)[0])
	}
	if got := strings.Join(kinds, " "); got != "init:ok snapshot:ok restore:failed snapshot:ok" {
		t.Fatalf("audit log kinds: %s", got)
	}
	var only []auditRow
	e.okJSON(&only, "audit", "log", "--json", "--path", src, "--kind", "snapshot")
	if len(only) != 2 {
		t.Fatalf("--path/--kind filter: %d rows", len(only))
	}
	e.ok("audit", "verify")
	old := filepath.Join(t.TempDir(), "checkpoint.txt")
	if err := os.WriteFile(old, []byte(e.ok("audit", "checkpoint").stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(e.ok("audit", "key").stdout, "custody.vault/") {
		t.Fatal("verifier key is not in note format")
	}

	// An insider edits one record in the catalog.
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(e.vault, "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := db.Exec(`UPDATE ledger SET record = replace(record, 'failed', 'ok') WHERE idx = 2`)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("tamper edited %d rows", n)
	}
	db.Close()
	e.fails(1, []string{"tampered", "record 2"}, "audit", "verify")

	// A wholly new catalog (history rewritten from scratch) is caught by
	// the checkpoints kept in the vault and by the one an auditor kept.
	for _, f := range []string{"catalog.db", "catalog.db-wal", "catalog.db-shm"} {
		os.Remove(filepath.Join(e.vault, f))
	}
	e.snapshot(src)
	e.fails(1, []string{"tampered"}, "audit", "verify", "--checkpoint", old)
}
