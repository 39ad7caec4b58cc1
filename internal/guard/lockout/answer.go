package lockout

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// maxRecent bounds the (uid, path) pairs remembered to rate-limit
// reports.
const maxRecent = 4096

var errMalformed = errors.New("malformed event from the kernel")

const metadataLen = 24 // sizeof(struct fanotify_event_metadata)

// answerer answers the events Run reads. Every process that opened a
// file on a marked filesystem is waiting for it, so it never blocks: no
// lock, no channel send that can wait, nothing but /proc.
type answerer struct {
	l       *Lockout
	creds   credReader
	link    []byte
	reports chan<- Denial
	recent  map[reportKey]*reportState
}

type reportKey struct {
	uid  uint32
	path string
}

type reportState struct {
	last       time.Time
	suppressed int64
}

func newAnswerer(l *Lockout, reports chan<- Denial) *answerer {
	return &answerer{l: l, link: make([]byte, 4096), reports: reports, recent: make(map[reportKey]*reportState)}
}

// verdict is the decision on one open.
type verdict struct {
	deny bool
	uid  uint32 // the locked uid that matched
	tgid int
	path string
}

// answer answers every permission event in b, one read's worth (struct
// fanotify_event_metadata each; this group asks for no info records), and
// closes every descriptor in them. A malformed event ends Run: the
// kernel allows what is left once the group is closed.
func (a *answerer) answer(b []byte) error {
	ne := binary.NativeEndian
	for len(b) > 0 {
		if len(b) < metadataLen {
			return fmt.Errorf("lockout: %w", errMalformed)
		}
		evLen, metaLen := int(ne.Uint32(b[0:4])), int(ne.Uint16(b[6:8]))
		if b[4] != unix.FANOTIFY_METADATA_VERSION || evLen < metadataLen || evLen > len(b) ||
			metaLen < metadataLen || metaLen > evLen {
			return fmt.Errorf("lockout: %w", errMalformed)
		}
		mask := ne.Uint64(b[8:16])
		fd := int(int32(ne.Uint32(b[16:20])))
		tid := int(int32(ne.Uint32(b[20:24])))
		b = b[evLen:]
		if mask&unix.FAN_Q_OVERFLOW != 0 {
			a.l.log.Warn("lockout: the kernel queue overflowed")
		}
		if fd < 0 {
			continue // the kernel answered it itself
		}
		if mask&(unix.FAN_OPEN_PERM|unix.FAN_OPEN_EXEC_PERM|unix.FAN_ACCESS_PERM) == 0 {
			unix.Close(fd)
			continue
		}
		a.handle(fd, tid)
	}
	return nil
}

// handle decides, replies and closes fd, then reports a denial.
func (a *answerer) handle(fd, tid int) {
	v := a.decide(fd, tid)
	var d Denial
	report := false
	if v.deny {
		a.l.denied.Add(1)
		if a.l.onDenied != nil {
			d, report = a.denial(v, tid)
		}
	}
	a.reply(fd, v.deny)
	unix.Close(fd)
	if report {
		select {
		case a.reports <- d:
		default:
			a.l.dropped.Add(1)
		}
	}
}

// decide allows what is outside the roots, what this process opens, and
// whatever cannot be attributed; it denies an open by a thread with a
// locked uid under the roots, or of a path it cannot read.
func (a *answerer) decide(fd, tid int) verdict {
	locked := *a.l.locked.Load()
	if len(locked) == 0 || tid <= 0 {
		return verdict{} // tid 0: the opener is in another pid namespace
	}
	path, err := a.path(fd)
	if err == nil && !inRoots(path, a.l.roots) {
		return verdict{}
	}
	c, err := a.creds.creds(tid)
	if err != nil || c.tgid == a.l.self {
		return verdict{}
	}
	uid, ok := c.lockedUID(locked)
	return verdict{deny: ok, uid: uid, tgid: c.tgid, path: path}
}

// path is the path of the file open as fd, as this process's mount
// namespace names it.
func (a *answerer) path(fd int) (string, error) {
	name := "/proc/self/fd/" + strconv.Itoa(fd)
	for {
		n, err := unix.Readlink(name, a.link)
		if err != nil {
			return "", err
		}
		if n < len(a.link) {
			return string(a.link[:n]), nil
		}
		a.link = make([]byte, 2*len(a.link))
	}
}

// reply writes the answer for fd (struct fanotify_response). The kernel
// takes one answer per write.
func (a *answerer) reply(fd int, deny bool) {
	var b [8]byte
	resp := uint32(unix.FAN_ALLOW)
	if deny {
		resp = unix.FAN_DENY
	}
	binary.NativeEndian.PutUint32(b[0:4], uint32(int32(fd)))
	binary.NativeEndian.PutUint32(b[4:8], resp)
	for {
		_, err := unix.Write(a.l.fd, b[:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			a.l.log.Warn("lockout: answer a permission event", "fd", fd, "deny", deny, "err", err)
		}
		return
	}
}

// denial returns the Denial to report for v, unless one was reported for
// the same uid and path within reportEvery; then it counts it.
func (a *answerer) denial(v verdict, tid int) (Denial, bool) {
	now := time.Now()
	k := reportKey{v.uid, v.path}
	st := a.recent[k]
	if st != nil && now.Sub(st.last) < a.l.reportEvery {
		st.suppressed++
		return Denial{}, false
	}
	if st == nil {
		if len(a.recent) >= maxRecent {
			a.prune(now)
		}
		st = &reportState{}
		a.recent[k] = st
	}
	// The opener still waits for our answer: its executable is its own.
	exe, _ := os.Readlink("/proc/" + strconv.Itoa(tid) + "/exe")
	d := Denial{Time: now, UID: v.uid, PID: v.tgid, Exe: exe, Path: v.path, Suppressed: st.suppressed}
	st.last, st.suppressed = now, 0
	return d, true
}

// prune forgets pairs whose window has passed and nothing is pending, or
// everything, counting what was pending as dropped, when that is not
// enough.
func (a *answerer) prune(now time.Time) {
	for k, st := range a.recent {
		if st.suppressed == 0 && now.Sub(st.last) >= a.l.reportEvery {
			delete(a.recent, k)
		}
	}
	if len(a.recent) < maxRecent/2 {
		return
	}
	for _, st := range a.recent {
		a.l.dropped.Add(st.suppressed)
	}
	clear(a.recent)
}
