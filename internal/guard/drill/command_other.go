//go:build !linux

package drill

import (
	"context"
	"errors"
	"os/exec"
)

// Command is only supported on Linux: the returned command fails to start.
func Command(ctx context.Context, exe string, uid, gid uint32, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Err = errors.New("drill: running a drill as another user is only supported on Linux")
	return cmd
}
