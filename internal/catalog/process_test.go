package catalog

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/custodyhq/custody/internal/catalog/pgtest"
	"github.com/custodyhq/custody/internal/ledger"
)

// The appender child: when the test binary runs with these variables set,
// TestAppenderProcess appends and exits instead of testing.
const (
	envChildDSN = "CUSTODY_TEST_APPENDER_DSN"
	envChildID  = "CUSTODY_TEST_APPENDER_ID"
)

const processBatches, processPer = 10, 30

func TestAppenderProcess(t *testing.T) {
	dsn := os.Getenv(envChildDSN)
	if dsn == "" {
		t.Skip("only runs as a child of TestSeveralProcessesAppendWithoutGaps")
	}
	id, _ := strconv.Atoi(os.Getenv(envChildID))
	ctx := context.Background()
	db, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	log := ledger.New(db)
	for b := range processBatches {
		if _, err := log.Append(ctx, records((id*processBatches+b)*processPer, processPer)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSeveralProcessesAppendWithoutGaps runs appenders as separate OS
// processes, each with its own connections (and, on SQLite, its own file
// locks), against one catalog.
func TestSeveralProcessesAppendWithoutGaps(t *testing.T) {
	for _, driver := range []string{SQLite, Postgres} {
		t.Run(driver, func(t *testing.T) {
			dsn := filepath.Join(t.TempDir(), "catalog.db")
			if driver == Postgres {
				dsn = pgtest.DSN(t)
			}
			ctx := context.Background()
			db, err := Open(ctx, dsn) // migrate once, before the race
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			const processes = 4
			cmds := make([]*exec.Cmd, processes)
			outs := make([]bytes.Buffer, processes)
			for i := range cmds {
				cmd := exec.Command(os.Args[0], "-test.run=^TestAppenderProcess$", "-test.count=1")
				cmd.Env = append(os.Environ(), envChildDSN+"="+dsn, envChildID+"="+strconv.Itoa(i))
				cmd.Stdout, cmd.Stderr = &outs[i], &outs[i]
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				cmds[i] = cmd
			}
			for i, cmd := range cmds {
				if err := cmd.Wait(); err != nil {
					t.Errorf("appender process %d: %v\n%s", i, err, outs[i].String())
				}
			}
			if t.Failed() {
				t.FailNow()
			}
			want := int64(processes * processBatches * processPer)
			if n, err := db.Size(ctx); err != nil || n != want {
				t.Fatalf("Size = %d, %v; want %d", n, err, want)
			}
			// Every record present once, in one gap-free sequence, and
			// each batch contiguous (appends never interleave).
			var next int64
			prev := -1
			seen := map[string]bool{}
			err = db.Records(ctx, 0)(func(i int64, rec []byte) bool {
				if i != next {
					t.Fatalf("gap: record %d where %d expected", i, next)
				}
				next++
				e, err := ledger.ParseLeaf(rec)
				if err != nil {
					t.Fatalf("record %d: %v", i, err)
				}
				if seen[e.Path] {
					t.Fatalf("record %d duplicates %s", i, e.Path)
				}
				seen[e.Path] = true
				var dir, n int
				if _, err := fmt.Sscanf(e.Path, "/data/dir%d/file%d", &dir, &n); err != nil {
					t.Fatalf("record %d: path %q", i, e.Path)
				}
				if n%processPer != 0 && n != prev+1 {
					t.Fatalf("record %d (entry %d) does not follow entry %d: batches interleaved", i, n, prev)
				}
				prev = n
				return true
			})
			if err != nil || next != want {
				t.Fatalf("read %d records: %v", next, err)
			}
			if err := ledger.Verify(ctx, db.Records(ctx, 0), db, nil); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
}
