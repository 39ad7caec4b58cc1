package watch

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Pidfd values fanotify puts in an event's pidfd record instead of a
// descriptor (FAN_NOPIDFD, FAN_EPIDFD).
const (
	pidfdGone  = -1 // the process had exited by the time the event was read
	pidfdError = -2 // the kernel could not make a pidfd (e.g. EMFILE)
)

const (
	// procTTL is how long a looked-up principal is trusted for further
	// events from the same pid without looking again. A wrong answer
	// needs the pid to be reused within it, which needs the kernel's
	// pid counter to wrap (pid_max pids) in that time.
	procTTL = time.Second
	// userTTL is how long a uid → name answer is kept.
	userTTL = 10 * time.Minute
	// maxProcs bounds the pid cache; expired entries are dropped past it.
	maxProcs = 4096
)

// attributor turns the pid of a fanotify event into a Principal: uid,
// user name, executable, from /proc, through a cache keyed by pid.
//
// The uid is the filesystem uid (fsuid, the fourth field of the Uid: line
// in /proc/PID/status), the one the kernel checks file access against. It
// is the effective uid (auditd's "euid") except in processes that set it
// apart with setfsuid, such as NFS and file servers acting for a client;
// the real uid (auditd's "uid") differs under setuid programs and is not
// whose rights were used.
//
// It never guesses: a process already gone when its event is read, whose
// pid was not looked up in the last procTTL, is unknown (UID nil). The
// event's pidfd, taken by the kernel when the event is read, tells
// whether the process still exists and, checked after reading /proc,
// that what was read belonged to it and not to a later process given the
// same pid. The start time (field 22 of /proc/PID/stat) is kept with each
// entry; a change means the pid was reused.
//
// An attributor is used by one goroutine.
type attributor struct {
	proc  string // "/proc", or a fake tree in tests
	ttl   time.Duration
	procs map[int32]procEntry
	users map[uint32]userEntry
	buf   []byte
	// lookupUser is user.LookupId by uid, replaceable in tests.
	lookupUser func(uid uint32) (string, error)
	// reused counts pids seen again with another start time.
	reused int
}

type procEntry struct {
	p       Principal
	start   uint64
	expires time.Time
}

type userEntry struct {
	name    string
	expires time.Time
}

func newAttributor() *attributor {
	return &attributor{
		proc:  "/proc",
		ttl:   procTTL,
		procs: make(map[int32]procEntry),
		users: make(map[uint32]userEntry),
		buf:   make([]byte, 4096),
		lookupUser: func(uid uint32) (string, error) {
			u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
			if err != nil {
				return "", err
			}
			return u.Username, nil
		},
	}
}

// principal is who acted for an event from pid, whose pidfd record held
// pidfd (a descriptor, pidfdGone or pidfdError), read at now. The second
// result is false when the principal is unknown; PID is set anyway.
// It does not close pidfd.
func (a *attributor) principal(pid int32, pidfd int, now time.Time) (Principal, bool) {
	if pid <= 0 {
		return Principal{}, false // not visible in our pid namespace
	}
	old, cached := a.procs[pid]
	if cached && now.Before(old.expires) {
		return old.p, true
	}
	unknown := Principal{PID: int(pid)}
	if pidfd == pidfdGone {
		delete(a.procs, pid)
		return unknown, false
	}
	e, err := a.read(pid)
	if err != nil {
		delete(a.procs, pid)
		return unknown, false
	}
	if pidfd >= 0 {
		// Alive (or a zombie, still holding its pid) after the reads:
		// they were about the event's process.
		if err := unix.PidfdSendSignal(pidfd, 0, nil, 0); err != nil {
			delete(a.procs, pid)
			return unknown, false
		}
	} else if start, err := a.startTime(pid); err != nil || start != e.start {
		delete(a.procs, pid) // no pidfd: at least the same process throughout
		return unknown, false
	}
	if cached && old.start != e.start {
		a.reused++
	}
	e.expires = now.Add(a.ttl)
	if len(a.procs) >= maxProcs {
		for k, v := range a.procs {
			if !now.Before(v.expires) {
				delete(a.procs, k)
			}
		}
	}
	a.procs[pid] = e
	return e.p, true
}

// read looks pid up in /proc: start time, fsuid, user, executable.
func (a *attributor) read(pid int32) (procEntry, error) {
	start, err := a.startTime(pid)
	if err != nil {
		return procEntry{}, err
	}
	status, err := a.readFile(pid, "status")
	if err != nil {
		return procEntry{}, err
	}
	uid, err := parseFSUID(status)
	if err != nil {
		return procEntry{}, fmt.Errorf("pid %d: %w", pid, err)
	}
	// A kernel thread or a zombie has no executable; the uid stands.
	exe, _ := os.Readlink(a.proc + "/" + strconv.Itoa(int(pid)) + "/exe")
	return procEntry{
		p:     Principal{UID: &uid, User: a.userName(uid), PID: int(pid), Exe: exe},
		start: start,
	}, nil
}

func (a *attributor) startTime(pid int32) (uint64, error) {
	stat, err := a.readFile(pid, "stat")
	if err != nil {
		return 0, err
	}
	return parseStartTime(stat)
}

// readFile reads /proc/PID/name into a.buf; the result is valid until the
// next call.
func (a *attributor) readFile(pid int32, name string) ([]byte, error) {
	f, err := os.Open(a.proc + "/" + strconv.Itoa(int(pid)) + "/" + name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	n := 0
	for {
		if n == len(a.buf) {
			a.buf = append(a.buf, make([]byte, len(a.buf))...)
		}
		m, err := f.Read(a.buf[n:])
		n += m
		if err != nil || m == 0 {
			break
		}
	}
	return a.buf[:n], nil
}

// userName is the name of uid, or "" when it has none.
func (a *attributor) userName(uid uint32) string {
	now := time.Now()
	if u, ok := a.users[uid]; ok && now.Before(u.expires) {
		return u.name
	}
	name, err := a.lookupUser(uid)
	if err != nil {
		name = ""
	}
	if len(a.users) >= maxProcs {
		clear(a.users)
	}
	a.users[uid] = userEntry{name: name, expires: now.Add(userTTL)}
	return name
}

var errProcFormat = errors.New("unexpected /proc format")

// parseFSUID returns the fsuid from /proc/PID/status: the last of the
// four ids (real, effective, saved, filesystem) on its "Uid:" line.
func parseFSUID(status []byte) (uint32, error) {
	for line := range bytes.Lines(status) {
		rest, ok := bytes.CutPrefix(line, []byte("Uid:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 4 {
			return 0, fmt.Errorf("%w: Uid line %q", errProcFormat, line)
		}
		uid, err := strconv.ParseUint(string(f[3]), 10, 32)
		if err != nil {
			return 0, fmt.Errorf("%w: Uid line %q", errProcFormat, line)
		}
		return uint32(uid), nil
	}
	return 0, fmt.Errorf("%w: no Uid line", errProcFormat)
}

// parseStartTime returns field 22 of /proc/PID/stat, the start time in
// clock ticks since boot. Field 2, the command name, is in parentheses and
// may itself hold spaces and parentheses, so fields are counted from the
// last ')'.
func parseStartTime(stat []byte) (uint64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("%w: stat without a command name", errProcFormat)
	}
	f := bytes.Fields(stat[i+1:]) // f[0] is field 3
	const field = 22 - 3
	if len(f) <= field {
		return 0, fmt.Errorf("%w: stat with %d fields", errProcFormat, len(f)+2)
	}
	start, err := strconv.ParseUint(string(f[field]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: stat start time %q", errProcFormat, f[field])
	}
	return start, nil
}
