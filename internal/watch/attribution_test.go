package watch

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseFSUIDTakesTheFourthID(t *testing.T) {
	for _, tc := range []struct {
		status string
		want   uint32
		ok     bool
	}{
		{"Name:\tsh\nUid:\t1000\t1001\t1002\t1003\nGid:\t0\t0\t0\t0\n", 1003, true},
		{"Uid:\t0\t0\t0\t65534\n", 65534, true},
		{"Uid:\t4294967294\t4294967294\t4294967294\t4294967294", 4294967294, true},
		{"Name:\tsh\n", 0, false},
		{"Uid:\t1\t2\t3\n", 0, false},
		{"Uid:\t1\t2\t3\tx\n", 0, false},
		{"Uid:\t1\t2\t3\t4294967296\n", 0, false},
	} {
		got, err := parseFSUID([]byte(tc.status))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseFSUID(%q) = %d, %v; want %d, ok %v", tc.status, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseStartTimeCountsFromTheLastParenthesis(t *testing.T) {
	fields := "S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 123456789 20"
	for _, tc := range []struct {
		stat string
		want uint64
		ok   bool
	}{
		{"42 (sh) " + fields, 123456789, true},
		{"42 (a) (b) c) " + fields, 123456789, true},
		{"42 (with space) " + fields + " 21 22", 123456789, true},
		{"42 (sh) S 1 2", 0, false},
		{"42 sh S", 0, false},
		{"42 (sh) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 x", 0, false},
	} {
		got, err := parseStartTime([]byte(tc.stat))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseStartTime(%q) = %d, %v; want %d, ok %v", tc.stat, got, err, tc.want, tc.ok)
		}
	}
}

// fakeProc writes /proc/PID/{stat,status,exe} for one process under dir.
func fakeProc(t *testing.T, dir string, pid int, start uint64, fsuid uint32, exe string) {
	t.Helper()
	p := filepath.Join(dir, fmt.Sprint(pid))
	os.RemoveAll(p)
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	stat := fmt.Sprintf("%d (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 %d 20\n", pid, start)
	status := fmt.Sprintf("Name:\tx\nUid:\t1\t2\t3\t%d\n", fsuid)
	if err := os.WriteFile(filepath.Join(p, "stat"), []byte(stat), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p, "status"), []byte(status), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(exe, filepath.Join(p, "exe")); err != nil {
		t.Fatal(err)
	}
}

func newFakeAttributor(t *testing.T) (*attributor, string) {
	dir := t.TempDir()
	a := newAttributor()
	a.proc = dir
	a.lookupUser = func(uid uint32) (string, error) {
		if uid == 7 {
			return "", errors.New("no such user")
		}
		return fmt.Sprintf("user%d", uid), nil
	}
	return a, dir
}

func TestAttributorCachesAndNoticesPidReuse(t *testing.T) {
	a, proc := newFakeAttributor(t)
	now := time.Now()
	fakeProc(t, proc, 100, 5000, 1003, "/usr/bin/first")
	p, ok := a.principal(100, pidfdError, now)
	if !ok || *p.UID != 1003 || p.User != "user1003" || p.PID != 100 || p.Exe != "/usr/bin/first" {
		t.Fatalf("principal = %+v, %v", p, ok)
	}
	// Another process gets pid 100; within the TTL the cache answers.
	fakeProc(t, proc, 100, 6000, 7, "/usr/bin/second")
	if p, _ := a.principal(100, pidfdError, now.Add(a.ttl/2)); p.Exe != "/usr/bin/first" {
		t.Fatalf("within the TTL: %+v", p)
	}
	// After it, the new process is looked up and the reuse counted.
	p, ok = a.principal(100, pidfdError, now.Add(a.ttl))
	if !ok || *p.UID != 7 || p.User != "" || p.Exe != "/usr/bin/second" || a.reused != 1 {
		t.Fatalf("after the TTL: %+v, %v, reused %d", p, ok, a.reused)
	}
}

func TestAttributorSaysUnknownRatherThanGuess(t *testing.T) {
	a, proc := newFakeAttributor(t)
	now := time.Now()
	fakeProc(t, proc, 100, 5000, 1003, "/usr/bin/x")
	for _, tc := range []struct {
		name  string
		pid   int32
		pidfd int
	}{
		{"pid not visible", 0, pidfdError},
		{"process gone when read", 100, pidfdGone},
		{"no such process", 200, pidfdError},
	} {
		p, ok := a.principal(tc.pid, tc.pidfd, now)
		if ok || p.UID != nil || p.User != "" || p.Exe != "" || p.PID != int(tc.pid) {
			t.Errorf("%s: principal %+v, %v; want unknown", tc.name, p, ok)
		}
	}
	// Once looked up while alive, later events of the same pid within the
	// TTL are attributed even if the process is gone by then.
	if _, ok := a.principal(100, pidfdError, now); !ok {
		t.Fatal("lookup failed")
	}
	if p, ok := a.principal(100, pidfdGone, now.Add(a.ttl/2)); !ok || *p.UID != 1003 {
		t.Errorf("gone within the TTL: %+v, %v", p, ok)
	}
	if p, ok := a.principal(100, pidfdGone, now.Add(a.ttl)); ok {
		t.Errorf("gone after the TTL: %+v, want unknown", p)
	}
}

func TestAttributorChecksTheProcessWithItsPidfd(t *testing.T) {
	requireRoot(t)
	sleep := exec.Command("sleep", "30")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	pid := sleep.Process.Pid
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pidfd)
	a := newAttributor()
	p, ok := a.principal(int32(pid), pidfd, time.Now())
	exe, _ := filepath.EvalSymlinks(sleep.Path)
	if !ok || *p.UID != 0 || p.User != "root" || p.Exe != exe {
		t.Fatalf("live process: %+v, %v; want root, %s", p, ok, exe)
	}
	sleep.Process.Kill()
	sleep.Wait()
	// Reaped: the pidfd says so, whatever /proc/PID now holds.
	if p, ok := newAttributor().principal(int32(pid), pidfd, time.Now()); ok {
		t.Fatalf("reaped process: %+v, want unknown", p)
	}
}

func FuzzParseStartTime(f *testing.F) {
	f.Add([]byte("1 (sh) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 99"))
	f.Fuzz(func(t *testing.T, b []byte) { parseStartTime(b) })
}

func FuzzParseFSUID(f *testing.F) {
	f.Add([]byte("Uid:\t1\t2\t3\t4\n"))
	f.Fuzz(func(t *testing.T, b []byte) { parseFSUID(b) })
}
