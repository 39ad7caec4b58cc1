package lockout

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"
)

var (
	// ErrGone is wrapped by Stop's error when the process has exited.
	ErrGone = errors.New("the process has exited")
	// ErrOtherUser is wrapped by Stop's error when the process does not
	// run as the given uid (any more): its pid may have been reused.
	ErrOtherUser = errors.New("the process does not run as that user")
)

// maxPasses bounds StopUser's scans of /proc: a user forking while it
// scans leaves new processes for the next pass.
const maxPasses = 5

// Stop freezes (SIGSTOP) or, with kill, ends (SIGKILL) process pid, but
// only if it still is the process that was seen: alive and running as
// uid (its filesystem, effective or real uid). It takes a pidfd first
// and signals through it, so a pid reused after the check cannot be hit;
// it reads /proc and then checks the pidfd's process still lives, so the
// uid read was that process's. It refuses uid 0 (ErrRoot), pid 1 and
// this process; it returns an error wrapping ErrGone or ErrOtherUser when
// it refuses for those reasons.
//
// A stopped process is resumed by SIGCONT, which the user's other
// processes may send: stop them all (StopUser with all) or kill.
func Stop(pid int, uid uint32, kill bool) error {
	switch {
	case uid == 0:
		return fmt.Errorf("stop pid %d: %w", pid, ErrRoot)
	case pid <= 1:
		return fmt.Errorf("stop pid %d: not a process that may be stopped", pid)
	case pid == os.Getpid():
		return fmt.Errorf("stop pid %d: it is this process", pid)
	}
	pfd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("stop pid %d: %w", pid, ErrGone)
	} else if err != nil {
		return fmt.Errorf("stop pid %d: pidfd_open: %w", pid, err)
	}
	defer unix.Close(pfd)
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("stop pid %d: %w", pid, ErrGone)
	} else if err != nil {
		return fmt.Errorf("stop pid %d: %w", pid, err)
	}
	c, err := parseStatus(b)
	if err != nil {
		return fmt.Errorf("stop pid %d: %w", pid, err)
	}
	if c.state == 'Z' || c.state == 'X' {
		return fmt.Errorf("stop pid %d: %w", pid, ErrGone)
	}
	// Still alive (a zombie keeps its pid too) after the read: what was
	// read was the pidfd's process, not a later one with its pid.
	if err := unix.PidfdSendSignal(pfd, 0, nil, 0); err != nil {
		return fmt.Errorf("stop pid %d: %w", pid, ErrGone)
	}
	if !c.matches(uid) {
		return fmt.Errorf("stop pid %d: %w: uid %d (real %d, effective %d, filesystem %d)",
			pid, ErrOtherUser, uid, c.real, c.effective, c.fs)
	}
	sig := unix.SIGSTOP
	if kill {
		sig = unix.SIGKILL
	}
	if err := unix.PidfdSendSignal(pfd, sig, nil, 0); errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("stop pid %d: %w", pid, ErrGone)
	} else if err != nil {
		return fmt.Errorf("stop pid %d: send %v: %w", pid, sig, err)
	}
	return nil
}

// StopUser stops (or, with kill, ends) every process of uid that has its
// working directory, its root, its executable, an open file or a mapped
// file under one of roots, or, with all, every process of uid. It scans
// /proc again while a scan finds new ones, since a user may fork in the
// meantime. It returns the pids it stopped, ascending, and the errors met
// (processes that exited before being stopped are not errors). It
// refuses uid 0 (ErrRoot).
func StopUser(uid uint32, roots []string, kill, all bool) ([]int, error) {
	if uid == 0 {
		return nil, fmt.Errorf("stop the processes of uid 0: %w", ErrRoot)
	}
	rs, err := resolveRoots(roots, false)
	if err != nil {
		return nil, fmt.Errorf("stop the processes of uid %d: %w", uid, err)
	}
	if len(rs) == 0 && !all {
		return nil, fmt.Errorf("stop the processes of uid %d: no roots given", uid)
	}
	self := os.Getpid()
	done := make(map[int]bool)
	var stopped []int
	var errs []error
	for range maxPasses {
		ents, err := os.ReadDir("/proc")
		if err != nil {
			return stopped, fmt.Errorf("stop the processes of uid %d: %w", uid, err)
		}
		found := false
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid <= 1 || pid == self || done[pid] {
				continue
			}
			if !ownedBy(pid, uid) || !all && !usesRoots(pid, rs) {
				continue
			}
			found = true
			done[pid] = true
			switch err := Stop(pid, uid, kill); {
			case err == nil:
				stopped = append(stopped, pid)
			case errors.Is(err, ErrGone), errors.Is(err, ErrOtherUser):
			default:
				errs = append(errs, err)
			}
		}
		if !found {
			break
		}
	}
	slices.Sort(stopped)
	if err := errors.Join(errs...); err != nil {
		return stopped, fmt.Errorf("stop the processes of uid %d: %w", uid, err)
	}
	return stopped, nil
}

// ownedBy reports whether process pid runs as uid and is not a zombie.
func ownedBy(pid int, uid uint32) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return false
	}
	c, err := parseStatus(b)
	return err == nil && c.matches(uid) && c.state != 'Z' && c.state != 'X'
}

// usesRoots reports whether process pid has its working directory, root,
// executable, an open file or a mapped file under one of rs.
func usesRoots(pid int, rs []root) bool {
	dir := "/proc/" + strconv.Itoa(pid) + "/"
	for _, l := range []string{"cwd", "root", "exe"} {
		if p, err := os.Readlink(dir + l); err == nil && inRoots(p, rs) {
			return true
		}
	}
	if ents, err := os.ReadDir(dir + "fd"); err == nil {
		for _, e := range ents {
			if p, err := os.Readlink(dir + "fd/" + e.Name()); err == nil && inRoots(p, rs) {
				return true
			}
		}
	}
	if b, err := os.ReadFile(dir + "maps"); err == nil {
		for _, p := range mapsPaths(b) {
			if inRoots(p, rs) {
				return true
			}
		}
	}
	return false
}
