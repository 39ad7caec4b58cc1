package lockout

import (
	"errors"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

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
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		exe, _ := os.Readlink("/proc/" + pid + "/exe")
		b, _ := os.ReadFile("/proc/" + pid + "/status")
		c, err := parseStatus(b)
		if err == nil && c.real == uint32(uid) && strings.HasSuffix(exe, "/sleep") {
			return cmd
		}
	}
	t.Fatalf("%v did not start", argv)
	return nil
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
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if got = state(pid); slices.Contains(want, got) {
			return
		}
	}
	t.Fatalf("pid %d: state %q, want one of %q", pid, got, want)
}

func TestStopFreezesThenKills(t *testing.T) {
	requireRoot(t)
	cmd := spawn(t, nobody, "/", "sleep", "60")
	pid := cmd.Process.Pid
	if err := Stop(pid, nobody, false); err != nil {
		t.Fatal(err)
	}
	waitState(t, pid, 'T')
	if err := Stop(pid, nobody, true); err != nil {
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
		{"another user's process", rootSleep.Process.Pid, nobody, ErrOtherUser},
		{"uid 0", rootSleep.Process.Pid, 0, ErrRoot},
		{"an exited process", done.Process.Pid, nobody, nil},
		{"init", 1, nobody, nil},
		{"itself", os.Getpid(), nobody, nil},
	}
	for _, c := range cases {
		err := Stop(c.pid, c.uid, true)
		if err == nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: Stop = %v, want %v", c.name, err, c.want)
		}
	}
	if s := state(rootSleep.Process.Pid); s != 'S' {
		t.Errorf("the root process is in state %q after refused stops", s)
	}
}

func TestStopUserStopsOnlyProcessesUsingRoots(t *testing.T) {
	requireRoot(t)
	tr := newTree(t)
	inRoot := spawn(t, nobody, tr.root, "sleep", "60")
	holding := spawn(t, nobody, "/", "sh", "-c", "exec 3<"+tr.file+"; exec sleep 60")
	elsewhere := spawn(t, nobody, "/", "sleep", "60")
	rootInRoot := spawn(t, 0, tr.root, "sleep", "60")

	got, err := StopUser(nobody, []string{tr.root}, false, false)
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
		} else if s := state(pid); s != 'S' {
			t.Errorf("%s (pid %d): state %q", c.name, pid, s)
		}
	}

	got, err = StopUser(nobody, nil, true, true)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(got, elsewhere.Process.Pid) {
		t.Errorf("all: %v does not hold %d", got, elsewhere.Process.Pid)
	}
	waitState(t, elsewhere.Process.Pid, 'Z', 0)
	if s := state(rootInRoot.Process.Pid); s != 'S' {
		t.Errorf("root's process: state %q after StopUser(all)", s)
	}

	if _, err := StopUser(0, []string{tr.root}, true, true); !errors.Is(err, ErrRoot) {
		t.Errorf("StopUser(0) = %v, want ErrRoot", err)
	}
}
