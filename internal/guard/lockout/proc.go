package lockout

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// creds is what /proc/ID/status says of a thread: its process (Tgid),
// its state and its user ids. Credentials are per thread in Linux; the
// kernel checks an open against the opening thread's.
type creds struct {
	tgid                       int
	state                      byte
	real, effective, saved, fs uint32
}

// matches reports whether uid is c's real, effective or filesystem uid.
// The filesystem uid is whose rights an open uses; the effective uid is
// the same except in file servers acting for a client (setfsuid); the
// real uid is the user who started a setuid program such as su or sudo,
// which a locked-out user must not use to get back in. The saved uid is
// left out: a root daemon that once dropped to a user keeps it.
func (c creds) matches(uid uint32) bool {
	return c.fs == uid || c.effective == uid || c.real == uid
}

// lockedUID returns which of c's uids is in locked, preferring the
// filesystem uid, then the effective, then the real one.
func (c creds) lockedUID(locked []uint32) (uint32, bool) {
	for _, id := range [...]uint32{c.fs, c.effective, c.real} {
		for _, u := range locked {
			if u == id {
				return id, true
			}
		}
	}
	return 0, false
}

var errProcFormat = errors.New("unexpected /proc format")

// parseStatus parses the Tgid:, State: and Uid: lines of /proc/ID/status
// ("Uid:" is followed by the real, effective, saved and filesystem uid).
func parseStatus(b []byte) (creds, error) {
	var c creds
	var haveTgid, haveUid bool
	for line := range bytes.Lines(b) {
		switch {
		case bytes.HasPrefix(line, []byte("Tgid:")):
			v, err := strconv.Atoi(string(bytes.TrimSpace(line[5:])))
			if err != nil || v < 0 {
				return c, fmt.Errorf("%w: Tgid line %q", errProcFormat, line)
			}
			c.tgid, haveTgid = v, true
		case bytes.HasPrefix(line, []byte("State:")):
			if f := bytes.Fields(line[6:]); len(f) > 0 {
				c.state = f[0][0]
			}
		case bytes.HasPrefix(line, []byte("Uid:")):
			f := bytes.Fields(line[4:])
			if len(f) != 4 {
				return c, fmt.Errorf("%w: Uid line %q", errProcFormat, line)
			}
			var ids [4]uint32
			for i, s := range f {
				v, err := strconv.ParseUint(string(s), 10, 32)
				if err != nil {
					return c, fmt.Errorf("%w: Uid line %q", errProcFormat, line)
				}
				ids[i] = uint32(v)
			}
			c.real, c.effective, c.saved, c.fs = ids[0], ids[1], ids[2], ids[3]
			haveUid = true
		}
		if haveTgid && haveUid && c.state != 0 {
			break
		}
	}
	if !haveTgid || !haveUid {
		return c, fmt.Errorf("%w: no Tgid or Uid line", errProcFormat)
	}
	return c, nil
}

// credReader reads threads' credentials for the reply path, which needs
// them for every event under the roots.
type credReader struct {
	buf         []byte
	noPidfdInfo bool
}

// errNoPidfdInfo means the kernel cannot give a thread's credentials
// through a pidfd.
var errNoPidfdInfo = errors.New("no PIDFD_GET_INFO")

// creds returns the credentials of thread tid (state left unset): through
// a pidfd (PIDFD_GET_INFO, Linux 6.13), three system calls, when the
// kernel has it, else from /proc/TID/status, which costs about four
// times as much (the kernel formats some 60 lines, memory use included).
func (r *credReader) creds(tid int) (creds, error) {
	if !r.noPidfdInfo {
		c, err := pidfdCreds(tid)
		if !errors.Is(err, errNoPidfdInfo) {
			return c, err
		}
		r.noPidfdInfo = true
	}
	return r.status(tid)
}

func pidfdCreds(tid int) (creds, error) {
	fd, err := unix.PidfdOpen(tid, unix.PIDFD_THREAD)
	if errors.Is(err, unix.EINVAL) {
		return creds{}, errNoPidfdInfo // before Linux 6.9: no PIDFD_THREAD
	} else if err != nil {
		return creds{}, err
	}
	defer unix.Close(fd)
	info := unix.PidfdInfo{Mask: unix.PIDFD_INFO_CREDS}
	err = unix.IoctlPidfdInfo(fd, &info)
	switch {
	case errors.Is(err, unix.ENOTTY), errors.Is(err, unix.EINVAL):
		return creds{}, errNoPidfdInfo
	case err != nil:
		return creds{}, err
	case info.Mask&unix.PIDFD_INFO_CREDS == 0:
		return creds{}, errNoPidfdInfo
	}
	return creds{tgid: int(info.Tgid), real: info.Ruid, effective: info.Euid, saved: info.Suid, fs: info.Fsuid}, nil
}

// status reads /proc/ID/status into a buffer it reuses, with raw system
// calls.
func (r *credReader) status(id int) (creds, error) {
	if r.buf == nil {
		r.buf = make([]byte, 8192)
	}
	fd, err := unix.Open("/proc/"+strconv.Itoa(id)+"/status", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return creds{}, err
	}
	defer unix.Close(fd)
	n := 0
	for n < len(r.buf) {
		m, err := unix.Read(fd, r.buf[n:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return creds{}, err
		}
		if m == 0 {
			break
		}
		n += m
	}
	return parseStatus(r.buf[:n])
}

// under reports whether path is root or inside it; both are clean and
// absolute.
func under(path, root string) bool {
	if root == "/" {
		return strings.HasPrefix(path, "/")
	}
	return path == root || strings.HasPrefix(path, root) && path[len(root)] == '/'
}

// root is a protected directory: as the caller named it, and with
// symbolic links resolved, as the kernel names what is opened in it.
type root struct {
	given, real string
}

// resolveRoots cleans and resolves dirs, which must be absolute. With
// must set, each must exist and be a directory.
func resolveRoots(dirs []string, must bool) ([]root, error) {
	var rs []root
	seen := make(map[string]bool)
	for _, d := range dirs {
		if !filepath.IsAbs(d) {
			return nil, fmt.Errorf("root %q is not an absolute path", d)
		}
		given := filepath.Clean(d)
		real, err := filepath.EvalSymlinks(given)
		if err != nil {
			if must {
				return nil, fmt.Errorf("root %s: %w", given, err)
			}
			real = given
		}
		if must {
			var st unix.Stat_t
			if err := unix.Stat(real, &st); err != nil {
				return nil, fmt.Errorf("root %s: %w", given, err)
			} else if st.Mode&unix.S_IFMT != unix.S_IFDIR {
				return nil, fmt.Errorf("root %s is not a directory", given)
			}
		}
		for _, p := range []string{given, real} {
			if !seen[p] {
				seen[p] = true
				rs = append(rs, root{given: given, real: p})
			}
		}
	}
	return rs, nil
}

// inRoots reports whether path is under one of rs.
func inRoots(path string, rs []root) bool {
	for _, r := range rs {
		if under(path, r.real) {
			return true
		}
	}
	return false
}

// mapsPaths returns the file paths in /proc/PID/maps: each line is
// "address perms offset dev inode", spaces, then the path, if any.
func mapsPaths(b []byte) []string {
	var paths []string
	for line := range bytes.Lines(b) {
		rest := bytes.TrimRight(line, "\n")
		for range 5 {
			rest = bytes.TrimLeft(rest, " ")
			i := bytes.IndexByte(rest, ' ')
			if i < 0 {
				rest = nil
				break
			}
			rest = rest[i:]
		}
		rest = bytes.TrimLeft(rest, " ")
		if len(rest) > 0 && rest[0] == '/' {
			p := string(rest)
			if len(paths) == 0 || paths[len(paths)-1] != p {
				paths = append(paths, p)
			}
		}
	}
	return paths
}
