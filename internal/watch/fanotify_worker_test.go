package watch

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/testkit"
)

// The fanotify tests act through a worker: this test binary run again as
// a child that does file operations it is sent on stdin. A source drops
// its own process's events, so the test process cannot act itself; and a
// worker that stays alive until the test has its events is attributed
// every time, where a short-lived tool may be gone before it is looked
// up.

const workerEnv = "CUSTODY_FANOTIFY_WORKER"

func init() {
	if os.Getenv(workerEnv) == "" {
		return
	}
	if err := runWorker(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// runWorker does one operation per line: space-separated hex fields, the
// operation and its arguments; it answers "ok" or "err ...".
func runWorker(in io.Reader, out io.Writer) error {
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		var args []string
		for _, h := range strings.Fields(sc.Text()) {
			b, err := hex.DecodeString(h)
			if err != nil {
				return err
			}
			args = append(args, string(b))
		}
		if len(args) == 0 {
			continue
		}
		if err := workerOp(args[0], args[1:]); err != nil {
			fmt.Fprintf(out, "err %q\n", err.Error())
		} else {
			fmt.Fprintln(out, "ok")
		}
	}
	return sc.Err()
}

func workerOp(op string, a []string) error {
	switch op {
	case "create":
		f, err := os.Create(a[0])
		if err != nil {
			return err
		}
		return f.Close()
	case "append":
		f, err := os.OpenFile(a[0], os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		if _, err := f.WriteString(a[1]); err != nil {
			return err
		}
		return f.Close()
	case "chmod":
		mode, _ := strconv.ParseUint(a[1], 8, 32)
		return os.Chmod(a[0], os.FileMode(mode))
	case "rename":
		return os.Rename(a[0], a[1])
	case "remove":
		return os.Remove(a[0])
	case "removeall":
		return os.RemoveAll(a[0])
	case "mkdir":
		return os.Mkdir(a[0], 0o777)
	case "many": // dir, n: create n empty files
		n, _ := strconv.Atoi(a[1])
		for i := range n {
			f, err := os.Create(filepath.Join(a[0], fmt.Sprintf("f%07d", i)))
			if err != nil {
				return err
			}
			f.Close()
		}
		return nil
	case "probe": // root: can this process use fanotify?
		f, err := NewFanotify([]string{a[0]}, FanotifyOptions{})
		switch {
		case err == nil:
			f.Close()
			return errors.New("available")
		case errors.Is(err, ErrFanotifyUnavailable):
			return nil
		}
		return err
	}
	return fmt.Errorf("unknown operation %q", op)
}

// worker is a running worker process.
type worker struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
	exe string // its executable, as /proc/PID/exe shows it
}

// startWorker starts a worker running exe, as root, or through setpriv as
// uid and gid 65534 (nobody) when asNobody.
func startWorker(t testing.TB, exe string, asNobody bool) *worker {
	t.Helper()
	var cmd *exec.Cmd
	if asNobody {
		cmd = exec.Command("setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", exe, "-test.run=^$")
	} else {
		cmd = exec.Command(exe, "-test.run=^$")
	}
	cmd.Env = append(os.Environ(), workerEnv+"=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	w := &worker{cmd: cmd, in: in, out: bufio.NewReader(out), exe: exe}
	t.Cleanup(func() {
		w.in.Close()
		w.cmd.Wait()
	})
	return w
}

// selfWorker is a worker running this test binary as root.
func selfWorker(t testing.TB) *worker {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return startWorker(t, exe, false)
}

// nobodyWorker is a worker running as nobody, from a copy of this test
// binary that nobody can execute.
func nobodyWorker(t testing.TB) *worker {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := publicDir(t, 0o755)
	exe := filepath.Join(dir, "worker.test")
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return startWorker(t, exe, true)
}

func (w *worker) pid() int { return w.cmd.Process.Pid }

// do runs one operation and fails the test if it fails.
func (w *worker) do(t testing.TB, op string, args ...string) {
	t.Helper()
	if err := w.try(op, args...); err != nil {
		t.Fatalf("worker %s %q: %v", op, args, err)
	}
}

func (w *worker) try(op string, args ...string) error {
	line := hex.EncodeToString([]byte(op))
	for _, a := range args {
		line += " " + hex.EncodeToString([]byte(a))
	}
	if _, err := io.WriteString(w.in, line+"\n"); err != nil {
		return err
	}
	reply, err := w.out.ReadString('\n')
	if err != nil {
		return fmt.Errorf("worker gone: %w", err)
	}
	if reply = strings.TrimSpace(reply); reply != "ok" {
		return errors.New(reply)
	}
	return nil
}

// publicDir is a new directory under /tmp with the given mode (t.TempDir's
// parents may be closed to other users), removed after the test.
func publicDir(t testing.TB, mode os.FileMode) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "custody-fanotify-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	return dir
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("fanotify needs root (CAP_SYS_ADMIN); run the tests as root")
	}
}

// watching is a running Fanotify source and the events it sent.
type watching struct {
	f      *Fanotify
	events chan Event
	cancel context.CancelFunc
	done   chan error
}

func newWatching(t testing.TB, roots ...string) *watching {
	t.Helper()
	f, err := NewFanotify(roots, FanotifyOptions{})
	if err != nil {
		t.Fatalf("NewFanotify: %v", err)
	}
	return &watching{f: f, events: make(chan Event, 1<<16), done: make(chan error, 1)}
}

// start runs the source until the test ends.
func (w *watching) start(t testing.TB) *watching {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go func() { w.done <- w.f.Run(ctx, w.events) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-w.done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Run returned %v, want context.Canceled", err)
			}
		case <-time.After(testkit.Long):
			t.Error("Run did not return after cancel")
		}
	})
	return w
}

func watch(t testing.TB, roots ...string) *watching {
	t.Helper()
	return newWatching(t, roots...).start(t)
}

// until collects events until one satisfies stop, which is not included,
// and fails the test after testkit.Long.
func (w *watching) until(t testing.TB, stop func(Event) bool) []Event {
	t.Helper()
	var got []Event
	deadline := time.After(testkit.Long)
	for {
		select {
		case e := <-w.events:
			if stop(e) {
				return got
			}
			got = append(got, e)
		case err := <-w.done:
			t.Fatalf("Run returned early: %v", err)
		case <-deadline:
			t.Fatalf("timed out; got so far: %s", describe(got))
		}
	}
}

// mark has the worker make a marker directory in dir and collects events
// up to it: everything the worker did before was read by then.
func (w *watching) mark(t testing.TB, wk *worker, dir string) []Event {
	t.Helper()
	marker := filepath.Join(dir, fmt.Sprintf(".mark-%d", time.Now().UnixNano()))
	wk.do(t, "mkdir", marker)
	return w.until(t, func(e Event) bool { return e.Kind == Create && e.Path == marker })
}

// shape is the part of an event tests compare exactly.
type shape struct {
	Kind    Kind
	Path    string
	OldPath string
	Dir     bool
}

func shapes(evs []Event) []shape {
	var s []shape
	for _, e := range evs {
		s = append(s, shape{e.Kind, e.Path, e.OldPath, e.Dir})
	}
	return s
}

func describe(evs []Event) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "\n  %s %q old=%q dir=%v root=%q pid=%d detail=%v", e.Kind, e.Path, e.OldPath, e.Dir, e.Root, e.Principal.PID, e.Detail)
	}
	return b.String()
}
