package daemon

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/audit"
	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/vaulttest"
	"github.com/custodyhq/custody/internal/watch"
)

// BenchmarkWatchToLedger measures events from the kernel to the ledger:
// CUSTODY_BENCH_FILES (default 100,000) files are created under a watched
// tree as fast as one goroutine can, and the clock stops when every one is
// a ledger entry (CUSTODY_BENCH_WATCH_DIR: where, default a temporary
// directory). It reports the end-to-end rate and the creation rate
// alone (the ceiling the watcher cannot beat).
func BenchmarkWatchToLedger(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("fanotify needs root")
	}
	n := 100_000
	if s := os.Getenv("CUSTODY_BENCH_FILES"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	ctx := context.Background()
	v, _ := vaulttest.New(b)
	var rate, createRate float64
	var totalOverflows int
	for range b.N {
		base := os.Getenv("CUSTODY_BENCH_WATCH_DIR") // e.g. a tmpfs, where creation is not the limit
		if base == "" {
			base = b.TempDir()
		}
		dir, err := os.MkdirTemp(base, "w")
		if err != nil {
			b.Fatal(err)
		}
		defer os.RemoveAll(dir)
		db, err := catalog.Open(ctx, filepath.Join(b.TempDir(), "c.db"))
		if err != nil {
			b.Fatal(err)
		}
		rec, err := audit.New(v, db)
		if err != nil {
			b.Fatal(err)
		}
		src, err := watch.NewFanotify([]string{dir}, watch.FanotifyOptions{})
		if err != nil {
			b.Fatal(err)
		}
		wctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		var seen, overflows int
		go func() {
			done <- Watch(wctx, v, rec, WatchOptions{Roots: []Root{{Path: dir, Dataset: "d"}}, Source: src, Event: func(e watch.Event) {
				switch e.Kind {
				case watch.Create:
					seen++
				case watch.Overflow:
					overflows++
				}
			}})
		}()
		time.Sleep(100 * time.Millisecond) // marks in place
		b.ResetTimer()
		start := time.Now()
		// Another process creates them: the watcher ignores its own.
		mk := exec.Command("perl", "-e", `chdir $ARGV[0] or die; for my $i (1..$ARGV[1]) { open(my $f, ">", sprintf("f%07d", $i)) or die; close $f }`, dir, strconv.Itoa(n))
		if out, err := mk.CombinedOutput(); err != nil {
			b.Fatalf("perl: %v\n%s", err, out)
		}
		created := time.Since(start)
		// Stop once everything is in: Watch drains what was read.
		for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(10 * time.Millisecond) {
			if sz, _ := db.Size(ctx); sz >= int64(n) || time.Now().After(deadline) {
				break
			}
		}
		took := time.Since(start)
		stop()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		size, _ := db.Size(ctx)
		if size < int64(n) {
			b.Fatalf("%d of %d creations reached the ledger (%d overflows)", size, n, overflows)
		}
		totalOverflows += overflows
		rate += float64(n) / took.Seconds()
		createRate += float64(n) / created.Seconds()
		db.Close()
	}
	b.ReportMetric(rate/float64(b.N), "events/s")
	b.ReportMetric(createRate/float64(b.N), "creates/s")
	b.ReportMetric(float64(totalOverflows)/float64(b.N), "overflows")
	b.ReportMetric(0, "ns/op")
}
