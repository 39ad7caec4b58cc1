package lockout

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/custodyhq/custody/internal/testkit"
)

// TestOnDeniedIsRateLimitedPerUserAndPath: twenty denials within one
// report window are one report; the next denial after the window reports
// them. A loaded machine may take longer than a window to make twenty
// opens; then the window is made longer and the test done again, rather
// than decided on a race.
func TestOnDeniedIsRateLimitedPerUserAndPath(t *testing.T) {
	requireRoot(t)
	for window := time.Second; !reportsOncePerWindow(t, window); window *= 4 {
		if window >= 16*time.Second {
			t.Skip("twenty opens took longer than 16 s")
		}
	}
}

// reportsOncePerWindow runs TestOnDeniedIsRateLimitedPerUserAndPath with
// window. It returns false, having checked only the count of denials,
// when the opens did not all fall within window of the first.
func reportsOncePerWindow(t *testing.T, window time.Duration) bool {
	t.Helper()
	tr := newTree(t)
	var seen denials
	l := start(t, Options{OnDenied: seen.add, ReportEvery: window}, tr.root)
	if err := l.Lock(nobody); err != nil {
		t.Fatal(err)
	}
	// "true <file" opens in the shell itself: twenty opens, one process.
	loop := "for i in $(seq 20); do true <" + tr.file + "; done 2>/dev/null; true"
	if out, err := run(t, nobody, "sh", "-c", loop); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	opened := time.Now()
	if got := l.Denied(); got != 20 {
		t.Errorf("Denied() = %d, want 20", got)
	}
	first := seen.wait(t, 1)[0]
	if opened.Sub(first.Time) >= window {
		t.Logf("twenty opens took longer than a %v window", window)
		return false
	}
	time.Sleep(time.Until(first.Time.Add(window))) // the window ends
	mustBeDenied(t, nobody, "cat", tr.file)
	got := seen.wait(t, 2)
	if len(got) != 2 || got[0].Suppressed != 0 || got[1].Suppressed != 19 || got[1].Path != tr.file {
		t.Errorf("reports %+v; want 2 for %s, the second with Suppressed 19", got, tr.file)
	}
	if l.Dropped() != 0 {
		t.Errorf("Dropped() = %d", l.Dropped())
	}
	return true
}

// TestFIFOUnderRootDoesNotHang: the kernel opens each event's file for
// Run, and a FIFO opened for reading would wait for the writer that waits
// for Run. Kernels since about 6.14 send no permission events for special
// files at all (6.18 here: FIFOs and devices under the root stay open to
// a locked user); older ones do.
func TestFIFOUnderRootDoesNotHang(t *testing.T) {
	requireRoot(t)
	tr := newTree(t)
	fifo := filepath.Join(tr.root, "fifo")
	if err := unix.Mkfifo(fifo, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(fifo, 0o666); err != nil {
		t.Fatal(err)
	}
	l := start(t, Options{}, tr.root)
	if err := l.Lock(nobody); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, 0, "sh", "-c", "cat "+fifo+" >/dev/null & echo x >"+fifo+"; wait"); err != nil {
		t.Fatalf("root through a FIFO: %v: %s", err, out)
	}
	// O_RDWR: a FIFO open that does not wait for the other end.
	out, err := run(t, nobody, "sh", "-c", "exec 3<>"+fifo)
	if err != nil && !strings.Contains(out, "Operation not permitted") {
		t.Errorf("uid %d opening the FIFO: %v: %s", nobody, err, out)
	}
	t.Logf("uid %d opening the FIFO: denied %v", nobody, err != nil)
}

// TestOwnOpensAreAllowed opens a file under the root from a thread of this
// process whose filesystem uid is the locked one: credentials are per
// thread, and Run reads the opening thread's, but its own process is let
// through.
func TestOwnOpensAreAllowed(t *testing.T) {
	requireRoot(t)
	tr := newTree(t)
	l := start(t, Options{}, tr.root)
	if err := l.Lock(nobody); err != nil {
		t.Fatal(err)
	}
	type result struct {
		c   creds
		err error
	}
	done := make(chan result)
	go func() {
		// The thread is not unlocked: it ends with the goroutine, its
		// credentials with it.
		runtime.LockOSThread()
		unix.RawSyscall(unix.SYS_SETFSUID, nobody, 0, 0)
		tid := unix.Gettid()
		var r credReader
		c, err := r.creds(tid)
		if err == nil {
			var b []byte
			b, err = os.ReadFile(tr.file)
			if err == nil && string(b) != "secret\n" {
				err = errors.New("wrong content")
			}
		}
		done <- result{c, err}
	}()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.c.fs != nobody || r.c.real != 0 || r.c.tgid != os.Getpid() {
		t.Errorf("thread credentials %+v; want fsuid %d, real uid 0, tgid %d", r.c, nobody, os.Getpid())
	}
	if l.Denied() != 0 {
		t.Errorf("Denied() = %d", l.Denied())
	}
}

// TestBlockedOnDeniedDropsInsteadOfDelaying: a callback that never
// returns fills the buffer; later denials are counted as dropped and opens
// are still answered.
func TestBlockedOnDeniedDropsInsteadOfDelaying(t *testing.T) {
	requireRoot(t)
	tr := newTree(t)
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	defer close(release) // before start's cleanup, which waits for the callback
	blocked := func(Denial) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
	}
	l := start(t, Options{OnDenied: blocked, ReportEvery: time.Nanosecond}, tr.root)
	if err := l.Lock(nobody); err != nil {
		t.Fatal(err)
	}
	// The first denial is taken by the callback, which blocks from then
	// on; "true <file" opens in the shell itself, without a fork.
	mustBeDenied(t, nobody, "sh", "-c", "true <"+tr.file)
	select {
	case <-entered:
	case <-time.After(testkit.Long):
		t.Fatal("OnDenied was not called for the first denial")
	}
	if out, err := run(t, nobody, "sh", "-c", "for i in $(seq 1099); do true <"+tr.file+"; done 2>/dev/null; true"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if got := l.Denied(); got != 1100 {
		t.Errorf("Denied() = %d, want 1100", got)
	}
	// A denial is counted before its answer, a dropped report after it:
	// root's open, answered after the last denial was handled, counts it.
	mustOpen(t, 0, tr.file)
	// One taken by the blocked callback, 1,024 buffered.
	if got := l.Dropped(); got != 1100-1-1024 {
		t.Errorf("Dropped() = %d, want %d", got, 1100-1-1024)
	}
}

// TestConcurrentOpeners runs locked and unlocked openers at once, so that
// reads return many events.
func TestConcurrentOpeners(t *testing.T) {
	requireRoot(t)
	tr := newTree(t)
	l := start(t, Options{}, tr.root)
	if err := l.Lock(nobody); err != nil {
		t.Fatal(err)
	}
	const n = 2000
	loop := "ok=0; for i in $(seq " + strconv.Itoa(n) + "); do true <" + tr.file + " && ok=$((ok+1)); done 2>/dev/null; echo $ok"
	var wg sync.WaitGroup
	outs := make([]string, 6)
	for i := range outs {
		uid := 0
		if i%2 == 1 {
			uid = nobody
		}
		wg.Go(func() {
			out, err := tryRun(uid, "sh", "-c", loop)
			if errors.Is(err, errHung) {
				t.Error(err)
			}
			outs[i] = strings.TrimSpace(out)
		})
	}
	wg.Wait()
	for i, out := range outs {
		want := strconv.Itoa(n)
		if i%2 == 1 {
			want = "0"
		}
		if out != want {
			t.Errorf("opener %d (uid %d): %s opens succeeded, want %s", i, i%2*nobody, out, want)
		}
	}
	if got := l.Denied(); got != 3*n {
		t.Errorf("Denied() = %d, want %d", got, 3*n)
	}
}
