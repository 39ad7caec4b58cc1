package drill

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/custodyhq/custody/internal/testkit"
)

const nobody = 65534

// unprivileged returns a scratch directory that uid nobody can reach and a
// copy of the test binary in it that nobody can run. It skips unless the
// test runs as root, which Command needs.
func unprivileged(t *testing.T) (base, exe string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("running as another user needs root")
	}
	base, err := os.MkdirTemp("", "drill-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe = filepath.Join(base, "drill.test")
	if err := copyFile(self, exe, 0o755); err != nil {
		t.Fatal(err)
	}
	return base, exe
}

func copyFile(from, to string, mode os.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	return errors.Join(err, out.Close())
}

func TestAttackAsNobodyOnRootTreeIsLockedOut(t *testing.T) {
	base, exe := unprivileged(t)
	dir := filepath.Join(base, "tree")
	if err := Prepare(dir, 40, 3); err != nil {
		t.Fatal(err)
	}
	_, before := regularFiles(t, dir)
	for _, v := range []string{EncryptRename, EncryptInPlace, CopyDelete, MassDelete} {
		t.Run(v, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), testkit.Long)
			defer cancel()
			cmd := Command(ctx, exe, nobody, nobody, helperArg, "attack", "--variant", v, "--dir", dir, "--max-denied", "3", "--note")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != ExitLockedOut {
				t.Fatalf("exit = %v, want code %d; stderr: %s", err, ExitLockedOut, stderr.String())
			}
			if stdout.Len() != 0 {
				t.Errorf("progress reports damage: %s", stdout.String())
			}
			paths, after := regularFiles(t, dir)
			if len(paths) != len(before) {
				t.Fatalf("%d files after the attack, want %d", len(paths), len(before))
			}
			for p, b := range before {
				if !bytes.Equal(after[p], b) {
					t.Fatalf("%s changed", p)
				}
			}
		})
	}
}

func TestCommandRunsAsGivenUserWithMinimalEnvironment(t *testing.T) {
	base, exe := unprivileged(t)
	dir := filepath.Join(base, "work")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CUSTODY_SECRET", "leak")
	cmd := Command(context.Background(), exe, nobody, nobody, helperArg, "benign", "--workload", ExtractTar, "--dir", dir, "--scale", "30")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, e := range cmd.Env {
		if e == "CUSTODY_SECRET=leak" {
			t.Error("the caller's environment leaked into the child")
		}
	}
	paths, _ := regularFiles(t, filepath.Join(dir, "extract"))
	if len(paths) != 30 {
		t.Fatalf("extracted %d files, want 30", len(paths))
	}
	fi, err := os.Stat(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != nobody || st.Gid != nobody {
		t.Errorf("extracted file owned by %d:%d, want %d:%d", st.Uid, st.Gid, nobody, nobody)
	}
}
