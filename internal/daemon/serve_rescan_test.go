package daemon

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/audit"
	"github.com/custodyhq/custody/internal/config"
	"github.com/custodyhq/custody/internal/server"
	"github.com/custodyhq/custody/internal/testkit"
	"github.com/custodyhq/custody/internal/vaulttest"
	"github.com/custodyhq/custody/internal/watch"
)

// The daemon's overflow rescans are its snapshots like the others: they
// wait for the dataset's snapshot lock (a scheduled snapshot running at
// the same time would otherwise make a second version with the same
// parent, a fork) and carry the dataset's stage.
func TestDaemonOverflowRescanWaitsForTheDatasetLockAndKeepsItsStage(t *testing.T) {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	rig := newOverflowRig(t)
	root := rig.root.Path
	testkit.WriteFiles(t, root, map[string][]byte{"a.txt": []byte("a")})
	first := vaulttest.Snapshot(t, rig.v, rig.root.Dataset, root)
	testkit.WriteFiles(t, root, map[string][]byte{"b.txt": []byte("b")}) // unseen by the watch

	stream := rig.rec.Stream(audit.StreamOptions{})
	streamDone := make(chan error, 1)
	streamCtx, stopStream := context.WithCancel(context.Background())
	defer stopStream()
	go func() { streamDone <- stream.Run(streamCtx) }()
	snap := &snapshotter{v: rig.v, db: rig.db, stream: stream, metrics: server.NewMetrics(), log: slog.New(slog.DiscardHandler),
		paths: map[string]config.Dataset{"raw": {Name: "raw", Path: root, Stage: "cleaning"}},
		locks: map[string]*sync.Mutex{"raw": {}}}
	var mu sync.Mutex
	var reported []watch.Event
	event := func(e watch.Event) {
		mu.Lock()
		defer mu.Unlock()
		reported = append(reported, e)
	}

	snap.locks["raw"].Lock() // a scheduled snapshot of the dataset is running
	rescanning := make(chan struct{})
	var once sync.Once
	rescan := func(ctx context.Context, r Root, report func(watch.Event)) error {
		once.Do(func() { close(rescanning) })
		return snap.rescan(ctx, r, report)
	}
	watched := make(chan error, 1)
	wctx, stopWatch := context.WithCancel(ctx)
	go func() {
		watched <- Watch(wctx, rig.v, rig.rec, WatchOptions{Roots: []Root{rig.root}, Source: rig.src, Window: time.Millisecond,
			Stream: stream, Event: event, Rescan: rescan})
	}()
	rig.src.overflow <- root
	select {
	case <-rescanning:
	case <-time.After(testkit.Long):
		t.Fatalf("no rescan started %v after the overflow", testkit.Long)
	}
	// The rescan waits for the lock now; were it not to, it would have
	// saved its version within this grace (the check below does not
	// depend on it: a version saved later would be just as wrong).
	time.Sleep(300 * time.Millisecond)
	if latest, err := rig.v.ResolveVersion(ctx, "latest", "raw"); err != nil || latest.ID != first.ID {
		t.Fatalf("a rescan saved a version while the dataset's snapshot lock was held (latest %v, %v)", latest, err)
	}
	snap.locks["raw"].Unlock()

	rescanned := func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range reported {
			if e.Kind == watch.Rescan && e.Path == filepath.Join(root, "b.txt") {
				return true
			}
		}
		return false
	}
	testkit.WaitFor(t, testkit.Long, "a rescan event for b.txt after the lock was released", rescanned)
	stopWatch()
	if err := <-watched; err != nil {
		t.Fatalf("Watch: %v", err)
	}
	stopStream()
	if err := <-streamDone; err != nil {
		t.Fatalf("stream: %v", err)
	}

	latest, err := rig.v.ResolveVersion(context.Background(), "latest", "raw")
	if err != nil {
		t.Fatal(err)
	}
	if latest.Parent == nil || *latest.Parent != first.ID || latest.Stage != "cleaning" {
		t.Fatalf("rescan version %s: parent %v, stage %q; want parent %s and the dataset's stage", latest.ID.Short(), latest.Parent, latest.Stage, first.ID.Short())
	}
	versions, err := rig.db.Versions(context.Background(), "raw")
	if err != nil || len(versions) != 1 || versions[0].ID != latest.ID.String() {
		t.Fatalf("catalog versions %+v (%v), want the rescan version indexed", versions, err)
	}
	var kinds []string
	for _, e := range rig.ledgerEntries(t) {
		kinds = append(kinds, e.Kind)
	}
	if len(kinds) != 3 || kinds[0] != "file.overflow" || kinds[1] != "snapshot" || kinds[2] != "file.rescan" {
		t.Fatalf("ledger kinds %v, want the overflow, the rescan's snapshot and the rescan of b.txt", kinds)
	}
}
