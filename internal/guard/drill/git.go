package drill

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
)

// gitCheckout makes a repository in a fresh directory under dir, commits
// scale files on branch a, changes a quarter, deletes an eighth and adds an
// eighth more on branch b, then checks out a and b in turn three times:
// bursts of rewrites, unlinks and creates by one process.
func gitCheckout(ctx context.Context, dir string, scale int) error {
	bin, err := exec.LookPath("git")
	if err != nil {
		return errors.New("no git binary found: install git")
	}
	repo, err := os.MkdirTemp(dir, "repo-")
	if err != nil {
		return err
	}
	if err := os.Chmod(repo, 0o755); err != nil {
		return err
	}
	git := func(args ...string) error {
		cmd := exec.CommandContext(ctx, bin, append([]string{"-c", "commit.gpgsign=false", "-c", "core.hooksPath=/dev/null"}, args...)...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(),
			"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
			"GIT_AUTHOR_NAME=Custody Drill", "GIT_AUTHOR_EMAIL=drill@custody.invalid",
			"GIT_COMMITTER_NAME=Custody Drill", "GIT_COMMITTER_EMAIL=drill@custody.invalid")
		return runCmd(cmd)
	}
	r := mrand.New(mrand.NewPCG(uint64(scale), 4))
	write := func(i int) error {
		p := filepath.Join(repo, fmt.Sprintf("pkg%02d", i%20), fmt.Sprintf("file%05d.go", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		return os.WriteFile(p, sourceFile(r, i), 0o644)
	}
	if err := git("init", "-q", "-b", "a"); err != nil {
		return err
	}
	for i := range scale {
		if err := write(i); err != nil {
			return err
		}
	}
	if err := commit(git, "branch a"); err != nil {
		return err
	}
	if err := git("checkout", "-q", "-b", "b"); err != nil {
		return err
	}
	for i := range scale {
		switch i % 8 {
		case 0, 1: // a quarter changed
			err = write(i)
		case 2: // an eighth deleted
			err = os.Remove(filepath.Join(repo, fmt.Sprintf("pkg%02d", i%20), fmt.Sprintf("file%05d.go", i)))
		case 3: // an eighth added
			err = write(scale + i)
		}
		if err != nil {
			return err
		}
	}
	if err := commit(git, "branch b"); err != nil {
		return err
	}
	for range 3 {
		for _, b := range []string{"a", "b"} {
			if err := git("checkout", "-q", b); err != nil {
				return err
			}
		}
	}
	return nil
}

func commit(git func(...string) error, msg string) error {
	if err := git("add", "-A"); err != nil {
		return err
	}
	return git("commit", "-q", "-m", msg)
}
