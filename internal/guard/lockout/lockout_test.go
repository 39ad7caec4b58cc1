package lockout

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/custodyhq/custody/internal/testkit"
)

// The tests protect a directory on a tmpfs of their own, so that the
// filesystem marks cover nothing else on the machine, and act as uid
// 65534 through setpriv.

const nobody = 65534

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: fanotify permission events and setpriv")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("needs setpriv (util-linux)")
	}
}

type tree struct {
	root    string // protected
	file    string // in root
	outside string // a file on the same filesystem, outside root
}

func newTree(t testing.TB) tree {
	t.Helper()
	dir, err := os.MkdirTemp("", "lockout-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("lockout-test", dir, "tmpfs", 0, "size=16m,mode=0755"); err != nil {
		t.Logf("cannot mount a tmpfs (%v): marking the filesystem of %s", err, dir)
	} else {
		t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	}
	tr := tree{root: filepath.Join(dir, "protected")}
	tr.file = filepath.Join(tr.root, "data.txt")
	tr.outside = filepath.Join(dir, "outside", "data.txt")
	testkit.WriteFile(t, tr.file, []byte("secret\n"))
	testkit.WriteFile(t, tr.outside, []byte("secret\n"))
	return tr
}

// start runs a Lockout for roots until the test ends.
func start(t testing.TB, opts Options, roots ...string) *Lockout {
	t.Helper()
	l, err := New(roots, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(testkit.Long):
			t.Error("Run did not return after cancel")
		}
	})
	waitRunning(t, l)
	return l
}

func waitRunning(t testing.TB, l *Lockout) {
	t.Helper()
	testkit.WaitFor(t, testkit.Long, "Run to start", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.running
	})
}

// run runs argv as uid (0: as root, without setpriv) and returns its
// combined output and error; it fails the test if argv hangs.
func run(t testing.TB, uid int, argv ...string) (string, error) {
	t.Helper()
	out, err := tryRun(uid, argv...)
	if errors.Is(err, errHung) {
		t.Fatal(err)
	}
	return out, err
}

var errHung = errors.New("hung")

// tryRun is run for other goroutines than the test's: a command still
// running after testkit.Long is killed, and its error wraps errHung.
func tryRun(uid int, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Long)
	defer cancel()
	if uid != 0 {
		id := strconv.Itoa(uid)
		argv = append([]string{"setpriv", "--reuid", id, "--regid", id, "--clear-groups"}, argv...)
	}
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if ctx.Err() != nil {
		return string(out), fmt.Errorf("%v %w after %v", argv, errHung, testkit.Long)
	}
	return string(out), err
}

func mustOpen(t testing.TB, uid int, path string) {
	t.Helper()
	if out, err := run(t, uid, "cat", path); err != nil {
		t.Fatalf("uid %d: cat %s: %v: %s", uid, path, err, out)
	}
}

func mustBeDenied(t testing.TB, uid int, argv ...string) {
	t.Helper()
	out, err := run(t, uid, argv...)
	if err == nil || !strings.Contains(out, "Operation not permitted") {
		t.Fatalf("uid %d: %v: %v: %q; want Operation not permitted", uid, argv, err, out)
	}
}

// markCount counts the filesystem marks of l's group.
func markCount(t testing.TB, l *Lockout) int {
	t.Helper()
	f, err := os.Open("/proc/self/fdinfo/" + strconv.Itoa(l.fd))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	for s := bufio.NewScanner(f); s.Scan(); {
		if strings.HasPrefix(s.Text(), "fanotify sdev:") {
			n++
		}
	}
	return n
}

type denials struct {
	mu   sync.Mutex
	seen []Denial
}

func (d *denials) add(x Denial) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seen = append(d.seen, x)
}

func (d *denials) wait(t testing.TB, n int) []Denial {
	t.Helper()
	var got []Denial
	testkit.WaitFor(t, testkit.Long, fmt.Sprintf("%d denials to be reported", n), func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		got = append([]Denial(nil), d.seen...)
		return len(got) >= n
	})
	return got
}

func TestLockDeniesLockedUserUnderRootsOnly(t *testing.T) {
	requireRoot(t)
	tr := newTree(t)
	var seen denials
	l := start(t, Options{OnDenied: seen.add}, tr.root)

	mustOpen(t, nobody, tr.file)
	if err := l.Lock(nobody); err != nil {
		t.Fatal(err)
	}
	mustBeDenied(t, nobody, "cat", tr.file)
	mustOpen(t, 0, tr.file)
	mustOpen(t, nobody, tr.outside)
	if got := l.Denied(); got != 1 {
		t.Errorf("Denied() = %d, want 1", got)
	}
	d := seen.wait(t, 1)[0]
	if d.UID != nobody || d.Path != tr.file || d.PID <= 0 || !strings.HasSuffix(d.Exe, "/cat") || d.Time.IsZero() {
		t.Errorf("denial %+v; want uid %d, path %s, exe cat", d, nobody, tr.file)
	}
	if got := l.Locked(); len(got) != 1 || got[0] != nobody {
		t.Errorf("Locked() = %v", got)
	}

	if err := l.Release(nobody); err != nil {
		t.Fatal(err)
	}
	mustOpen(t, nobody, tr.file)
	if got := l.Locked(); len(got) != 0 {
		t.Errorf("Locked() after Release = %v", got)
	}
}

func TestLockDeniesDirectoryListing(t *testing.T) {
	requireRoot(t)
	tr := newTree(t)
	l := start(t, Options{}, tr.root)
	if err := l.Lock(nobody); err != nil {
		t.Fatal(err)
	}
	mustBeDenied(t, nobody, "ls", tr.root)
	if _, err := run(t, nobody, "ls", filepath.Dir(tr.outside)); err != nil {
		t.Errorf("ls outside the root: %v", err)
	}
}

// TestLockDeniesExec shows FAN_OPEN_PERM alone covers execve.
func TestLockDeniesExec(t *testing.T) {
	requireRoot(t)
	tr := newTree(t)
	prog := filepath.Join(tr.root, "true")
	b, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(prog, b, 0o755); err != nil {
		t.Fatal(err)
	}
	l := start(t, Options{}, tr.root)
	if out, err := run(t, nobody, prog); err != nil {
		t.Fatalf("before Lock: %v: %s", err, out)
	}
	if err := l.Lock(nobody); err != nil {
		t.Fatal(err)
	}
	mustBeDenied(t, nobody, prog)
	if out, err := run(t, 0, prog); err != nil {
		t.Errorf("root: %v: %s", err, out)
	}
}

func TestLockRefusesRoot(t *testing.T) {
	requireRoot(t)
	tr := newTree(t)
	l := start(t, Options{}, tr.root)
	if err := l.Lock(0); !errors.Is(err, ErrRoot) {
		t.Errorf("Lock(0) = %v, want ErrRoot", err)
	}
	if got := l.Locked(); len(got) != 0 {
		t.Errorf("Locked() = %v", got)
	}
	if n := markCount(t, l); n != 0 {
		t.Errorf("%d marks after a refused lock", n)
	}
}

func TestMarksOnlyWhileSomeoneIsLocked(t *testing.T) {
	requireRoot(t)
	tr := newTree(t)
	l, err := New([]string{tr.root, filepath.Dir(tr.outside)}, Options{}) // one filesystem, one mark
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Lock(nobody); err != nil {
		t.Fatal(err)
	}
	if n := markCount(t, l); n != 0 {
		t.Fatalf("%d marks before Run", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitRunning(t, l)
	steps := []struct {
		do    func() error
		marks int
	}{
		{func() error { return nil }, 1}, // locked before Run: marked when it started
		{func() error { return l.Lock(nobody - 1) }, 1},
		{func() error { return l.Release(nobody) }, 1},
		{func() error { return l.Release(nobody - 1) }, 0},
		{func() error { return l.Release(nobody - 1) }, 0},
		{func() error { return l.Lock(nobody) }, 1},
	}
	for i, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if n := markCount(t, l); n != s.marks {
			t.Errorf("step %d: %d marks, want %d", i, n, s.marks)
		}
	}
	mustBeDenied(t, nobody, "cat", tr.file)
}

func TestRunCancelRemovesMarks(t *testing.T) {
	requireRoot(t)
	tr := newTree(t)
	l, err := New([]string{tr.root}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	waitRunning(t, l)
	if err := l.Lock(nobody); err != nil {
		t.Fatal(err)
	}
	mustBeDenied(t, nobody, "cat", tr.file)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v, want context.Canceled", err)
		}
	case <-time.After(testkit.Long):
		t.Fatal("Run did not return")
	}
	mustOpen(t, nobody, tr.file)
	if err := l.Lock(nobody + 1); !errors.Is(err, ErrClosed) {
		t.Errorf("Lock after Run = %v, want ErrClosed", err)
	}
	if err := l.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Run again = %v, want ErrClosed", err)
	}
}

func TestCloseStopsRun(t *testing.T) {
	requireRoot(t)
	tr := newTree(t)
	l, err := New([]string{tr.root}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- l.Run(context.Background()) }()
	waitRunning(t, l)
	if err := l.Lock(nobody); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(testkit.Long):
		t.Fatal("Run did not return after Close")
	}
	mustOpen(t, nobody, tr.file)
}

func TestNewRefusesBadRoots(t *testing.T) {
	for _, roots := range [][]string{nil, {"relative"}, {"/nonexistent-lockout-root"}, {"/etc/hostname"}, {"/proc/self"}} {
		if _, err := New(roots, Options{}); err == nil {
			t.Errorf("New(%q) succeeded", roots)
		}
	}
}
