package main_test

import (
	"database/sql"
	"encoding/base64"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	_ "github.com/ncruces/go-sqlite3/driver"

	"github.com/custodyhq/custody/internal/testkit"
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
	testkit.WriteFile(t, filepath.Join(src, "a.txt"), []byte("first"))
	e.snapshot(src)
	e.fails(1, []string{"no such version"}, "restore", "deadbeef00", "--target", t.TempDir())
	testkit.WriteFile(t, filepath.Join(src, "a.txt"), []byte("second"))
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
	e.fails(1, []string{"tampered", "checkpoint given"}, "audit", "prove", "--consistency", old)
}

func TestAuditTrailOfConcurrentCommandsHasNoGap(t *testing.T) {
	t.Parallel()
	e := newVault(t)
	base := t.TempDir()
	var dirs []string
	for i := range 4 {
		dir := filepath.Join(base, "set-"+string(rune('a'+i)))
		testkit.WriteFile(t, filepath.Join(dir, "f.txt"), []byte(dir))
		dirs = append(dirs, dir)
	}
	for i, r := range e.snapshotAll(dirs) {
		if r.code != 0 {
			t.Fatalf("concurrent snapshot %d: want exit 0, got\n%s", i, r)
		}
	}
	var rows []auditRow
	e.okJSON(&rows, "audit", "log")
	if len(rows) != 1+len(dirs) {
		t.Fatalf("%d audit entries, want init and %d snapshots", len(rows), len(dirs))
	}
	for i, r := range rows {
		if r.Index != int64(i) {
			t.Fatalf("entry %d has index %d: the sequence has a gap", i, r.Index)
		}
	}
	e.ok("audit", "verify")
}

func TestAuditRefusesBadCheckpointsAndDamagedCatalogs(t *testing.T) {
	t.Parallel()
	e := newVault(t)
	src := filepath.Join(t.TempDir(), "raw")
	testkit.WriteFile(t, filepath.Join(src, "a.txt"), []byte("first"))
	e.snapshot(src)
	dir := t.TempDir()
	put := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	// A checkpoint of another vault's log.
	other := newVault(t)
	foreign := put("foreign.txt", other.ok("audit", "checkpoint").stdout)
	e.fails(1, []string{"checkpoint"}, "audit", "verify", "--checkpoint", foreign)

	// Our checkpoint with its signature altered, and one that is garbage.
	cp := e.ok("audit", "checkpoint").stdout
	sig := strings.LastIndex(cp, " ") + 1
	forged := []byte(cp)
	forged[sig+10] ^= 'A' ^ 'B'
	if forged[sig+10] == cp[sig+10] {
		forged[sig+10] = 'C'
	}
	e.fails(1, []string{"checkpoint"}, "audit", "verify", "--checkpoint", put("forged.txt", string(forged)))
	e.fails(1, []string{"checkpoint"}, "audit", "verify", "--checkpoint", put("garbage.txt", "not a checkpoint\n"))
	e.fails(2, []string{"missing.txt"}, "audit", "verify", "--checkpoint", filepath.Join(dir, "missing.txt"))

	// A truncated catalog database.
	e.ok("audit", "verify")
	db := filepath.Join(e.vault, "catalog.db")
	e.ok("audit", "log") // leaves the WAL checkpointed into the file
	for _, f := range []string{db + "-wal", db + "-shm"} {
		os.Remove(f)
	}
	fi, err := os.Stat(db)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(db, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	r := e.run("audit", "verify")
	if r.code != 1 || strings.Contains(r.stderr, "panic") || strings.Contains(r.stderr, "goroutine ") {
		t.Fatalf("truncated catalog: want a clear error and exit 1, got\n%s", r)
	}
}

func TestCatalogIndexesDatasetsVersionsAndPrincipals(t *testing.T) {
	t.Parallel()
	e := newVault(t)
	src := filepath.Join(t.TempDir(), "raw")
	testkit.WriteFile(t, filepath.Join(src, "a.txt"), []byte("first"))
	first := e.snapshot(src)
	testkit.WriteFile(t, filepath.Join(src, "a.txt"), []byte("second"))
	second := e.snapshot(src)

	type dataset struct {
		Name     string `json:"name"`
		Versions int    `json:"versions"`
		Latest   string `json:"latest"`
	}
	datasets := func() []dataset {
		var ds []dataset
		e.okJSON(&ds, "catalog", "datasets")
		return ds
	}
	if ds := datasets(); len(ds) != 1 || ds[0].Name != "raw" || ds[0].Versions != 2 || ds[0].Latest != second.Version {
		t.Fatalf("datasets after two snapshots: %+v", ds)
	}
	e.ok("forget", first.Version)
	if ds := datasets(); len(ds) != 1 || ds[0].Versions != 1 {
		t.Fatalf("datasets after forget: %+v", ds)
	}
	var ps []struct {
		Kind    string `json:"kind"`
		Actions int64  `json:"actions"`
	}
	e.okJSON(&ps, "catalog", "principals")
	if len(ps) != 1 || ps[0].Kind != "os" || ps[0].Actions != 4 { // init, 2 snapshots, forget
		t.Fatalf("principals: %+v", ps)
	}

	// A catalog moved to a new database (here: lost) is rebuilt from the vault.
	for _, f := range []string{"catalog.db", "catalog.db-wal", "catalog.db-shm"} {
		os.Remove(filepath.Join(e.vault, f))
	}
	if ds := datasets(); len(ds) != 0 {
		t.Fatalf("datasets of an empty catalog: %+v", ds)
	}
	var sync struct{ Versions, Added, Removed int }
	e.okJSON(&sync, "catalog", "sync")
	if sync.Versions != 1 || sync.Added != 1 || sync.Removed != 0 {
		t.Fatalf("sync: %+v", sync)
	}
	if ds := datasets(); len(ds) != 1 || ds[0].Latest != second.Version {
		t.Fatalf("datasets after sync: %+v", ds)
	}
}

// independentCheckpoint opens a checkpoint with golang.org/x/mod/sumdb/note
// and reads its C2SP tlog-checkpoint body by hand: nothing of custody's.
func independentCheckpoint(t *testing.T, verifierKey, signed string) tlog.Tree {
	t.Helper()
	v, err := note.NewVerifier(verifierKey)
	if err != nil {
		t.Fatalf("verifier key %q: %v", verifierKey, err)
	}
	n, err := note.Open([]byte(signed), note.VerifierList(v))
	if err != nil {
		t.Fatalf("checkpoint does not verify: %v\n%s", err, signed)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) != 4 || lines[0] != v.Name() || lines[3] != "" {
		t.Fatalf("checkpoint body is not origin, size, root:\n%s", n.Text)
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != tlog.HashSize {
		t.Fatalf("root hash %q", lines[2])
	}
	tree := tlog.Tree{N: size}
	copy(tree.Hash[:], root)
	return tree
}

func decodeHashes(t *testing.T, b64 []string) []tlog.Hash {
	t.Helper()
	out := make([]tlog.Hash, len(b64))
	for i, s := range b64 {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b) != tlog.HashSize {
			t.Fatalf("proof hash %q", s)
		}
		copy(out[i][:], b)
	}
	return out
}

func TestIndependentVerifierAcceptsTheCLIsProofs(t *testing.T) {
	t.Parallel()
	e := newVault(t)
	src := filepath.Join(t.TempDir(), "raw")
	for i := range 3 {
		testkit.WriteFile(t, filepath.Join(src, "a.txt"), []byte(strconv.Itoa(i)))
		e.snapshot(src)
	}
	key := strings.TrimSpace(e.ok("audit", "key").stdout)
	oldText := e.ok("audit", "checkpoint").stdout
	old := independentCheckpoint(t, key, oldText)
	oldFile := filepath.Join(t.TempDir(), "old.txt")
	if err := os.WriteFile(oldFile, []byte(oldText), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		testkit.WriteFile(t, filepath.Join(src, "b.txt"), []byte(strconv.Itoa(i)))
		e.snapshot(src)
	}

	var inc struct {
		Index      int64    `json:"index"`
		Record     string   `json:"record"`
		Proof      []string `json:"proof"`
		Checkpoint string   `json:"checkpoint"`
	}
	for _, i := range []string{"0", "3", "8"} {
		e.okJSON(&inc, "audit", "prove", i)
		tree := independentCheckpoint(t, key, inc.Checkpoint)
		if tree.N != 9 { // init and eight snapshots
			t.Fatalf("checkpoint covers %d entries, want 9", tree.N)
		}
		if err := tlog.CheckRecord(decodeHashes(t, inc.Proof), tree.N, tree.Hash, inc.Index, tlog.RecordHash([]byte(inc.Record))); err != nil {
			t.Fatalf("inclusion proof of entry %s: %v", i, err)
		}
		// The proof is bound to the record: another record fails it.
		if tlog.CheckRecord(decodeHashes(t, inc.Proof), tree.N, tree.Hash, inc.Index, tlog.RecordHash([]byte(inc.Record+" "))) == nil {
			t.Fatal("an altered record passes the inclusion proof")
		}
	}

	var cons struct {
		Proof      []string `json:"proof"`
		Checkpoint string   `json:"checkpoint"`
	}
	e.okJSON(&cons, "audit", "prove", "--consistency", oldFile)
	cur := independentCheckpoint(t, key, cons.Checkpoint)
	if err := tlog.CheckTree(decodeHashes(t, cons.Proof), cur.N, cur.Hash, old.N, old.Hash); err != nil {
		t.Fatalf("consistency proof %d -> %d: %v", old.N, cur.N, err)
	}
	e.fails(2, []string{"not both"}, "audit", "prove", "1", "--consistency", oldFile)
}

func TestClosedGateStopsDestructiveStepsNotSnapshots(t *testing.T) {
	t.Parallel()
	e := newVault(t)
	base := t.TempDir()
	raw, train := filepath.Join(base, "raw"), filepath.Join(base, "train")
	testkit.WriteFile(t, filepath.Join(raw, "a.txt"), []byte("a"))
	testkit.WriteFile(t, filepath.Join(train, "b.txt"), []byte("b"))
	first := e.snapshot(raw)
	e.snapshot(train)

	var gate struct {
		ID string `json:"id"`
	}
	e.okJSON(&gate, "gate", "close", "--dataset", "raw", "--reason", "incident 7: mass renames")
	if gate.ID == "" {
		t.Fatal("gate close printed no id")
	}
	e.fails(1, []string{"forget refused", "zero-trust gate is closed", gate.ID, "incident 7", "custody gate open"},
		"forget", "--dataset", "raw", "--keep-last", "1")
	e.fails(1, []string{"forget refused", gate.ID}, "forget", first.Version)
	e.fails(1, []string{"prune refused", gate.ID}, "prune")
	e.ok("forget", "--dataset", "raw", "--keep-last", "1", "--dry-run") // changes nothing: allowed
	e.ok("forget", "--dataset", "train", "--keep-last", "1")            // another dataset
	testkit.WriteFile(t, filepath.Join(raw, "a.txt"), []byte("a2"))
	e.snapshot(raw) // the recovery point: snapshots go on
	if !strings.Contains(e.ok("gate", "status").stdout, gate.ID) {
		t.Fatal("gate status does not list the closed gate")
	}
	e.fails(2, []string{"--reason"}, "gate", "close")

	e.ok("gate", "open", gate.ID)
	e.fails(1, []string{"already opened"}, "gate", "open", gate.ID)
	e.ok("prune")
	e.ok("forget", first.Version)

	var rows []auditRow
	e.okJSON(&rows, "audit", "log", "--kind", "gate.close")
	if len(rows) != 1 || rows[0].Outcome != "ok" {
		t.Fatalf("gate.close entries: %+v", rows)
	}
	e.okJSON(&rows, "audit", "log", "--kind", "prune")
	if len(rows) != 2 || !strings.HasPrefix(rows[0].Outcome, "failed: prune refused") || rows[1].Outcome != "ok" {
		t.Fatalf("prune entries: %+v", rows)
	}
}
