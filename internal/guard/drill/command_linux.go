package drill

import (
	"context"
	"os/exec"
	"syscall"
)

// Command returns exe run as uid:gid with no supplementary groups, a
// minimal environment and / as its working directory, for running Main in
// a process the guard sees as a foreign, unprivileged principal. args are
// passed as they are: the CLI's hidden subcommand, then Main's arguments.
// The child is killed if the parent dies, so an attack never outlives the
// drill that started it. The caller must be root (or hold CAP_SETUID and
// CAP_SETGID), and exe and the tree must be reachable by uid.
func Command(ctx context.Context, exe string, uid, gid uint32, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Dir = "/"
	cmd.Env = minimalEnv
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}},
		Pdeathsig:  syscall.SIGKILL,
	}
	return cmd
}

// minimalEnv is all a drill child needs: a PATH for tar, gzip and git, and
// a HOME that is not the caller's.
var minimalEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/nonexistent",
	"LC_ALL=C",
}
