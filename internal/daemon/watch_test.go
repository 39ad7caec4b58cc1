package daemon

import (
	"context"
	"encoding/base64"
	"maps"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/audit"
	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/ledger"
	"github.com/custodyhq/custody/internal/testkit"
	"github.com/custodyhq/custody/internal/vault"
	"github.com/custodyhq/custody/internal/vaulttest"
	"github.com/custodyhq/custody/internal/watch"
)

func TestEntryKeepsEveryByteOfAPath(t *testing.T) {
	uid := uint32(65534)
	odd := "/data/raw/name with spaces\nand \xff\xfe.csv"
	e := Entry(watch.Event{Time: time.Unix(1, 0), Kind: watch.Rename, Path: odd, OldPath: "/data/raw/old\xff", Root: "/data/raw",
		Principal: watch.Principal{UID: &uid, User: "nobody", PID: 7, Exe: "/bin/mv"}, Count: 3, Dir: true}, "raw")
	if e.Kind != "file.rename" || e.Dataset != "raw" || e.Path != "/data/raw/name with spaces\nand \\xff\\xfe.csv" || e.Actor.User != "nobody" || *e.Actor.UID != 65534 {
		t.Fatalf("entry: %+v", e)
	}
	raw, err := base64.StdEncoding.DecodeString(e.Detail["path_b64"])
	if err != nil || string(raw) != odd {
		t.Fatalf("path_b64 = %q (%v), want the exact bytes", raw, err)
	}
	if e.Detail["old_path"] != "/data/raw/old\\xff" || e.Detail["old_path_b64"] == "" || e.Detail["count"] != "3" || e.Detail["dir"] != "1" {
		t.Fatalf("detail: %v", e.Detail)
	}
	// The leaf is valid canonical JSON and parses back to the same entry.
	leaf, err := e.Leaf()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ledger.ParseLeaf(leaf)
	if err != nil || back.Path != e.Path || back.Detail["path_b64"] != e.Detail["path_b64"] {
		t.Fatalf("round trip: %+v %v", back, err)
	}
	moved := Entry(watch.Event{Time: time.Unix(1, 0), Kind: watch.Delete, Path: "/d/x", Detail: map[string]string{"moved_to": "/elsewhere/\xff"}}, "d")
	if moved.Detail["moved_to"] != "/elsewhere/\\xff" || moved.Detail["moved_to_b64"] != base64.StdEncoding.EncodeToString([]byte("/elsewhere/\xff")) {
		t.Fatalf("moved_to: %v", moved.Detail)
	}
	plain := Entry(watch.Event{Time: time.Unix(1, 0), Kind: watch.Create, Path: "/d/ok.txt"}, "d")
	if plain.Path != "/d/ok.txt" || plain.Detail != nil {
		t.Fatalf("plain entry: %+v", plain)
	}
}

// faultSource is a watch.Source that reports nothing on its own: the test
// injects an overflow (the kernel dropping events) for a root when it
// chooses, so what changed meanwhile reaches the ledger only by a rescan.
type faultSource struct{ overflow chan string }

func (s *faultSource) Name() string     { return "fault" }
func (s *faultSource) Attributes() bool { return false }

func (s *faultSource) Run(ctx context.Context, out chan<- watch.Event) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case root := <-s.overflow:
			e := watch.Event{Time: time.Now().UTC(), Kind: watch.Overflow, Path: root, Root: root, Count: 7}
			select {
			case out <- e:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}

// overflowRig is a real vault, a real SQLite catalog and its recorder,
// with Watch running on a faultSource over one root.
type overflowRig struct {
	v    *vault.Vault
	db   *catalog.DB
	rec  *audit.Recorder
	root Root
	src  *faultSource
}

func newOverflowRig(t *testing.T) *overflowRig {
	t.Helper()
	v, _ := vaulttest.New(t)
	db, err := catalog.Open(context.Background(), filepath.Join(t.TempDir(), "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	rec, err := audit.New(v, db)
	if err != nil {
		t.Fatal(err)
	}
	return &overflowRig{v: v, db: db, rec: rec, root: Root{Path: t.TempDir(), Dataset: "raw"}, src: &faultSource{overflow: make(chan string)}}
}

// overflowAndWait starts Watch, injects an overflow for the root, waits
// until done reports the rescan's work (what) visible, and stops Watch.
func (rig *overflowRig) overflowAndWait(t *testing.T, what string, done func(ctx context.Context) bool) {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	watched := make(chan error, 1)
	go func() {
		watched <- Watch(ctx, rig.v, rig.rec, WatchOptions{Roots: []Root{rig.root}, Source: rig.src, Window: time.Millisecond, Index: rig.db})
	}()
	rig.src.overflow <- rig.root.Path
	for deadline := time.Now().Add(30 * time.Second); !done(ctx); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("30 s after the overflow, still no %s (Watch: %v)", what, <-watched)
		}
	}
	stop()
	if err := <-watched; err != nil {
		t.Fatalf("Watch: %v", err)
	}
}

// ledgerEntries reads the whole ledger back from the catalog.
func (rig *overflowRig) ledgerEntries(t *testing.T) []*ledger.Entry {
	t.Helper()
	var out []*ledger.Entry
	err := rig.db.Records(context.Background(), 0)(func(_ int64, rec []byte) bool {
		e, err := ledger.ParseLeaf(rec)
		if err != nil {
			t.Fatalf("ledger record %s: %v", rec, err)
		}
		out = append(out, e)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkOverflowEntry checks that e records the injected overflow.
func (rig *overflowRig) checkOverflowEntry(t *testing.T, e *ledger.Entry) {
	t.Helper()
	if e.Kind != "file.overflow" || e.Path != rig.root.Path || e.Dataset != rig.root.Dataset || e.Outcome != "ok" || e.Detail["count"] != "7" {
		t.Fatalf("first entry %+v, want the overflow of %s", e, rig.root.Path)
	}
}

func TestOverflowRescanRecordsEveryChangeSinceTheLastVersion(t *testing.T) {
	ctx := context.Background()
	rig := newOverflowRig(t)
	root := rig.root.Path
	testkit.WriteFiles(t, root, map[string][]byte{
		"keep.txt": []byte("unchanged"), "change.txt": []byte("old"), "gone.txt": []byte("bye"),
		"olddir/inner.txt": []byte("x"), "same/z.txt": []byte("z"),
	})
	first := vaulttest.Snapshot(t, rig.v, rig.root.Dataset, root)

	// Changes the watcher never hears of.
	testkit.WriteFiles(t, root, map[string][]byte{
		"new.txt": []byte("hello"), "newdir/a.txt": []byte("a"), "change.txt": []byte("new, and longer"),
	})
	if err := os.Remove(filepath.Join(root, "gone.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(root, "olddir")); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"gone.txt": "removed", "olddir": "removed", "olddir/inner.txt": "removed",
		"new.txt": "added", "newdir": "added", "newdir/a.txt": "added",
		"change.txt": "modified",
	}

	rig.overflowAndWait(t, "overflow and rescan entries in the ledger", func(ctx context.Context) bool {
		n, err := rig.db.Size(ctx)
		return err == nil && n >= int64(1+len(want))
	})

	latest, err := rig.v.ResolveVersion(ctx, "latest", rig.root.Dataset)
	if err != nil {
		t.Fatal(err)
	}
	if latest.ID == first.ID || latest.Parent == nil || *latest.Parent != first.ID {
		t.Fatalf("latest version %s (parent %v), want a rescan version on top of %s", latest.ID.Short(), latest.Parent, first.ID.Short())
	}
	entries := rig.ledgerEntries(t)
	if len(entries) != 1+len(want) {
		for _, e := range entries {
			t.Logf("%s %s %v", e.Kind, e.Path, e.Detail)
		}
		t.Fatalf("%d ledger entries, want the overflow and %d rescans", len(entries), len(want))
	}
	rig.checkOverflowEntry(t, entries[0])
	got := map[string]string{}
	for _, e := range entries[1:] {
		rel, err := filepath.Rel(root, e.Path)
		if e.Kind != "file.rescan" || err != nil || e.Dataset != rig.root.Dataset || e.Outcome != "ok" || e.Actor.UID != nil {
			t.Fatalf("entry %+v, want a rescan of a path under %s with no actor", e, root)
		}
		if e.Detail["version"] != latest.ID.String() || e.Detail["principal"] != "unknown" {
			t.Fatalf("%s: detail %v, want version %s and principal unknown", rel, e.Detail, latest.ID)
		}
		if _, dup := got[rel]; dup {
			t.Fatalf("%s recorded twice", rel)
		}
		got[rel] = e.Detail["change"]
	}
	if !maps.Equal(got, want) {
		t.Fatalf("rescan changes %v, want %v", got, want)
	}
	if _, err := rig.rec.Verify(ctx, nil); err != nil {
		t.Fatalf("the ledger does not verify: %v", err)
	}

	// The catalog indexes the rescan version, as `custody snapshot` would
	// (the first version was taken without the catalog).
	versions, err := rig.db.Versions(ctx, rig.root.Dataset)
	if err != nil {
		t.Fatal(err)
	}
	if len(versions) != 1 || versions[0].ID != latest.ID.String() || versions[0].Parent != first.ID.String() || versions[0].Files != latest.Files {
		t.Fatalf("catalog versions of %s: %+v, want the rescan version %s", rig.root.Dataset, versions, latest.ID)
	}
}

func TestOverflowWithoutEarlierVersionSavesTheBaseline(t *testing.T) {
	ctx := context.Background()
	rig := newOverflowRig(t)
	testkit.WriteFiles(t, rig.root.Path, map[string][]byte{"a.txt": []byte("a"), "sub/b.txt": []byte("b")})

	rig.overflowAndWait(t, "baseline version in the catalog", func(ctx context.Context) bool {
		vs, err := rig.db.Versions(ctx, rig.root.Dataset)
		return err == nil && len(vs) > 0
	})

	baseline, err := rig.v.ResolveVersion(ctx, "latest", rig.root.Dataset)
	if err != nil {
		t.Fatalf("no baseline version saved: %v", err)
	}
	if baseline.Parent != nil || baseline.Files != 2 {
		t.Fatalf("baseline %+v, want a first version holding 2 files", baseline)
	}
	entries := rig.ledgerEntries(t)
	if len(entries) != 1 {
		for _, e := range entries {
			t.Logf("%s %s %v", e.Kind, e.Path, e.Detail)
		}
		t.Fatalf("%d ledger entries, want only the overflow", len(entries))
	}
	rig.checkOverflowEntry(t, entries[0])
	versions, err := rig.db.Versions(ctx, rig.root.Dataset)
	if err != nil {
		t.Fatal(err)
	}
	if len(versions) != 1 || versions[0].ID != baseline.ID.String() || versions[0].Parent != "" {
		t.Fatalf("catalog versions of %s: %+v, want the baseline %s", rig.root.Dataset, versions, baseline.ID)
	}
}
