package lockout

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/custodyhq/custody/internal/testkit"
)

// stopUID is the user whose processes the stop tests start and stop. It
// is not nobody: StopUser with all stops every process of its uid on the
// machine, and tests of other packages run as nobody at the same time.
const stopUID = 64921

// spawn starts argv as uid (0: as root) in dir and waits until it runs
// sleep as that uid; the process is killed when the test ends.
func spawn(t *testing.T, uid int, dir string, argv ...string) *exec.Cmd {
	t.Helper()
	if uid != 0 {
		id := strconv.Itoa(uid)
		argv = append([]string{"setpriv", "--reuid", id, "--regid", id, "--clear-groups"}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() { cmd.Wait(); close(waited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-waited
	})
	pid := strconv.Itoa(cmd.Process.Pid)
	testkit.WaitFor(t, testkit.Long, strings.Join(argv, " ")+" to run sleep", func() bool {
		exe, _ := os.Readlink("/proc/" + pid + "/exe")
		b, _ := os.ReadFile("/proc/" + pid + "/status")
		c, err := parseStatus(b)
		return err == nil && c.real == uint32(uid) && strings.HasSuffix(exe, "/sleep")
	})
	return cmd
}

// state is the process state letter of pid (R, S, T, Z...), 0 once gone.
func state(pid int) byte {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	c, _ := parseStatus(b)
	return c.state
}

func waitState(t *testing.T, pid int, want ...byte) {
	t.Helper()
	var got byte
	testkit.WaitFor(t, testkit.Long, "pid "+strconv.Itoa(pid)+" to reach a state in "+strconv.Quote(string(want)), func() bool {
		got = state(pid)
		return slices.Contains(want, got)
	})
}

// mustNotBeStopped checks that process pid (what) was neither stopped nor
// killed: it exists, is not stopped (T, t) nor dead (Z, X), and has no
// SIGSTOP or SIGKILL pending. A signal is taken when the process next
// runs, which on a loaded machine may be long after it was sent; pending
// until then, it is seen without waiting. Whether the process is running
// (R) or asleep (S) at that moment says nothing.
func mustNotBeStopped(t *testing.T, what string, pid int) {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Errorf("%s (pid %d) is gone: %v", what, pid, err)
		return
	}
	c, err := parseStatus(b)
	if err != nil {
		t.Fatalf("%s (pid %d): %v", what, pid, err)
	}
	if slices.Contains([]byte("TtZX"), c.state) {
		t.Errorf("%s (pid %d) is in state %q", what, pid, c.state)
	}
	const stopOrKill = 1<<(unix.SIGSTOP-1) | 1<<(unix.SIGKILL-1)
	for _, field := range []string{"SigPnd:", "ShdPnd:"} {
		if m := statusMask(t, b, field); m&stopOrKill != 0 {
			t.Errorf("%s (pid %d) has a SIGSTOP or SIGKILL pending (%s %016x)", what, pid, field, m)
		}
	}
}

// statusMask is the hexadecimal signal mask of field in /proc/PID/status.
func statusMask(t *testing.T, status []byte, field string) uint64 {
	t.Helper()
	for line := range bytes.Lines(status) {
		if rest, ok := bytes.CutPrefix(line, []byte(field)); ok {
			m, err := strconv.ParseUint(string(bytes.TrimSpace(rest)), 16, 64)
			if err != nil {
				t.Fatalf("/proc status %s %q: %v", field, rest, err)
			}
			return m
		}
	}
	t.Fatalf("no %s line in /proc status", field)
	return 0
}

func TestStopFreezesThenKills(t *testing.T) {
	requireRoot(t)
	cmd := spawn(t, stopUID, "/", "sleep", "60")
	pid := cmd.Process.Pid
	if err := Stop(pid, stopUID, false); err != nil {
		t.Fatal(err)
	}
	waitState(t, pid, 'T')
	if err := Stop(pid, stopUID, true); err != nil {
		t.Fatal(err)
	}
	waitState(t, pid, 'Z', 0)
}

func TestStopRefuses(t *testing.T) {
	requireRoot(t)
	rootSleep := spawn(t, 0, "/", "sleep", "60")
	done := exec.Command("true")
	if err := done.Run(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		pid  int
		uid  uint32
		want error
	}{
		{"another user's process", rootSleep.Process.Pid, stopUID, ErrOtherUser},
		{"uid 0", rootSleep.Process.Pid, 0, ErrRoot},
		{"an exited process", done.Process.Pid, stopUID, nil},
		{"init", 1, stopUID, nil},
		{"itself", os.Getpid(), stopUID, nil},
	}
	for _, c := range cases {
		err := Stop(c.pid, c.uid, true)
		if err == nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: Stop = %v, want %v", c.name, err, c.want)
		}
	}
	mustNotBeStopped(t, "the root process, after refused stops", rootSleep.Process.Pid)
}

func TestStopUserStopsOnlyProcessesUsingRoots(t *testing.T) {
	requireRoot(t)
	tr := newTree(t)
	inRoot := spawn(t, stopUID, tr.root, "sleep", "60")
	holding := spawn(t, stopUID, "/", "sh", "-c", "exec 3<"+tr.file+"; exec sleep 60")
	elsewhere := spawn(t, stopUID, "/", "sleep", "60")
	rootInRoot := spawn(t, 0, tr.root, "sleep", "60")

	got, err := StopUser(stopUID, []string{tr.root}, false, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		cmd  *exec.Cmd
		want bool
	}{
		{"cwd under the root", inRoot, true},
		{"file open under the root", holding, true},
		{"elsewhere", elsewhere, false},
		{"root's", rootInRoot, false},
	} {
		pid := c.cmd.Process.Pid
		if slices.Contains(got, pid) != c.want {
			t.Errorf("%s (pid %d): stopped %v, want %v (stopped %v)", c.name, pid, !c.want, c.want, got)
		}
		if c.want {
			waitState(t, pid, 'T')
		} else {
			mustNotBeStopped(t, c.name, pid)
		}
	}

	got, err = StopUser(stopUID, nil, true, true)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(got, elsewhere.Process.Pid) {
		t.Errorf("all: %v does not hold %d", got, elsewhere.Process.Pid)
	}
	waitState(t, elsewhere.Process.Pid, 'Z', 0)
	mustNotBeStopped(t, "root's process, after StopUser(all)", rootInRoot.Process.Pid)

	if _, err := StopUser(0, []string{tr.root}, true, true); !errors.Is(err, ErrRoot) {
		t.Errorf("StopUser(0) = %v, want ErrRoot", err)
	}
}
