package main_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/custodyhq/custody/internal/testkit"
)

// TestBadInput runs each mistake against a vault with one version and wants
// a one-line error, the right exit code, and the vault untouched.
func TestBadInput(t *testing.T) {
	t.Parallel()
	e := newVault(t)
	rng := newRand(t)
	src := filepath.Join(t.TempDir(), "data")
	testkit.WriteFile(t, filepath.Join(src, "a.txt"), textBytes(rng, 5000))
	testkit.WriteFile(t, filepath.Join(src, "b/c.bin"), testkit.RandomBytes(rng.Uint64(), 20_000))
	v := e.snapshot(src).Version
	out := filepath.Join(t.TempDir(), "out")

	// unchanged runs f and fails t if the vault directory changed meanwhile.
	unchanged := func(t *testing.T, f func()) {
		t.Helper()
		before := vaultListing(t, e.vault)
		f()
		assertUnchanged(t, e.vault, before)
	}

	t.Run("WrongPassphrase", func(t *testing.T) {
		e := e.in(t)
		unchanged(t, func() {
			e.failsEnv([]string{"CUSTODY_PASSWORD=not the passphrase"}, 1, []string{"wrong passphrase"}, "log")
			e.failsEnv([]string{"CUSTODY_PASSWORD=not the passphrase"}, 1, []string{"wrong passphrase"}, "snapshot", src)
		})
	})

	t.Run("NoPassphraseIsUsageError", func(t *testing.T) {
		e := e.in(t)
		unchanged(t, func() {
			e.failsEnv([]string{"CUSTODY_PASSWORD="}, 2, []string{"CUSTODY_PASSWORD"}, "log")
		})
	})

	t.Run("VaultIsNotAVault", func(t *testing.T) {
		e := e.in(t)
		dir := t.TempDir()
		testkit.WriteFile(t, filepath.Join(dir, "some-file"), []byte("not a vault\n"))
		before := vaultListing(t, dir)
		e.fails(1, []string{"not a custody vault"}, "--vault", dir, "log")
		e.fails(1, []string{"not a custody vault"}, "--vault", dir, "snapshot", src)
		assertUnchanged(t, dir, before)
	})

	t.Run("VaultIsMissing", func(t *testing.T) {
		e := e.in(t)
		missing := filepath.Join(t.TempDir(), "no", "such", "vault")
		e.fails(1, []string{"does not exist"}, "--vault", missing, "log")
		e.fails(1, []string{"does not exist"}, "--vault", missing, "snapshot", src)
		if _, err := os.Lstat(filepath.Join(filepath.Dir(filepath.Dir(missing)))); !os.IsNotExist(err) {
			t.Errorf("a failed command created %s", filepath.Dir(filepath.Dir(missing)))
		}
	})

	t.Run("VaultIsAFile", func(t *testing.T) {
		e := e.in(t)
		f := filepath.Join(t.TempDir(), "file")
		testkit.WriteFile(t, f, []byte("x"))
		e.fails(1, []string{"not a directory"}, "--vault", f, "log")
	})

	t.Run("NewerFormatAsksToUpgrade", func(t *testing.T) {
		e := e.in(t)
		marker := filepath.Join(e.vault, "custody-vault")
		b, err := os.ReadFile(marker)
		if err != nil {
			t.Fatal(err)
		}
		b2 := regexp.MustCompile(`("version":\s*)1\b`).ReplaceAll(b, []byte("${1}2"))
		if bytes.Equal(b, b2) {
			t.Fatalf("marker %s does not hold \"version\": 1: %s", marker, b)
		}
		replaceFile(t, marker, b2)
		defer replaceFile(t, marker, b)
		unchanged(t, func() {
			e.fails(1, []string{"upgrade"}, "log")
			e.fails(1, []string{"upgrade"}, "snapshot", src)
		})
	})

	t.Run("UnknownVersion", func(t *testing.T) {
		e := e.in(t)
		unknown := "0123456789abcdef"
		if strings.HasPrefix(v, unknown[:8]) {
			unknown = "fedcba9876543210"
		}
		unchanged(t, func() {
			e.fails(1, []string{"no such version", unknown}, "restore", unknown, "--target", out)
			e.fails(1, []string{"no such version"}, "diff", v, unknown+strings.Repeat("0", 48))
			e.fails(1, []string{"no such version"}, "ls", "latest", "--dataset", "other")
		})
		if _, err := os.Lstat(out); err == nil {
			t.Errorf("a failed restore created its target %s", out)
		}
	})

	t.Run("RestorePathNotInVersion", func(t *testing.T) {
		e := e.in(t)
		unchanged(t, func() {
			e.fails(1, []string{"no/such/path"}, "restore", v+":no/such/path", "--target", out)
			e.fails(1, []string{"c.bin"}, "ls", v+":b/c.bin/deeper")
		})
		if _, err := os.Lstat(out); err == nil {
			t.Errorf("a failed restore created its target %s", out)
		}
	})

	t.Run("AmbiguousPrefix", func(t *testing.T) {
		e := e.in(t)
		// Two version objects whose names share 8 characters. Their content
		// does not matter: resolution must refuse before reading them.
		var fakes []string
		for _, rest := range []string{strings.Repeat("1", 56), strings.Repeat("2", 56)} {
			fake := filepath.Join(e.vault, "versions", "abcdef01"+rest)
			testkit.WriteFile(t, fake, []byte("fake"))
			fakes = append(fakes, fake)
		}
		defer func() {
			for _, f := range fakes {
				os.Remove(f)
			}
		}()
		unchanged(t, func() {
			e.fails(1, []string{"ambiguous", "abcdef01"}, "restore", "abcdef01", "--target", out)
			e.fails(1, []string{"ambiguous"}, "ls", "ABCDEF01")
		})
		// Nine characters tell them apart; the object is then found but fake.
		r := e.run("ls", "abcdef011")
		if r.code == 0 || strings.Contains(r.stderr, "ambiguous") {
			t.Errorf("ls of a fake version with a unique prefix: want a failure that is not \"ambiguous\", got\n%s", r)
		}
	})

	t.Run("RestoreRefusesNonEmptyTarget", func(t *testing.T) {
		e := e.in(t)
		target := t.TempDir()
		testkit.WriteFile(t, filepath.Join(target, "a.txt"), []byte("mine, not the vault's\n"))
		testkit.WriteFile(t, filepath.Join(target, "unrelated"), []byte("also mine\n"))
		before := vaultListing(t, target)
		unchanged(t, func() {
			e.fails(1, []string{"not empty", "--overwrite"}, "restore", v, "--target", target)
		})
		assertUnchanged(t, target, before)

		e.ok("restore", v, "--target", target, "--overwrite")
		got := scanTree(t, target)
		if got["unrelated"] == nil {
			t.Errorf("restore --overwrite removed an entry that is not in the version")
		}
		delete(got, "unrelated")
		compareEntries(t, scanTree(t, src), got)
	})

	t.Run("InitRefusesExistingVault", func(t *testing.T) {
		e := e.in(t)
		unchanged(t, func() {
			e.fails(1, []string{"already"}, "init")
			e.failsEnv([]string{"CUSTODY_PASSWORD=another"}, 1, []string{"already"}, "init")
		})
	})

	t.Run("InitRefusesNonEmptyDirectory", func(t *testing.T) {
		e := e.in(t)
		dir := t.TempDir()
		testkit.WriteFile(t, filepath.Join(dir, "data", "precious.bin"), []byte("not a pack"))
		testkit.WriteFile(t, filepath.Join(dir, "versions", strings.Repeat("ab", 32)), []byte("not a version"))
		before := vaultListing(t, dir)
		e.fails(1, []string{"choose an empty directory"}, "--vault", dir, "init")
		assertUnchanged(t, dir, before)
	})

	t.Run("ForgetWithoutKeepRule", func(t *testing.T) {
		e := e.in(t)
		unchanged(t, func() {
			e.fails(2, []string{"--keep-last"}, "forget", "--dataset", "data")
			e.fails(2, []string{"--keep-last"}, "forget", "--dataset", "data", "--keep-last", "0")
			e.fails(2, []string{"--dataset"}, "forget", "--keep-last", "1")
			e.fails(2, []string{"duration"}, "forget", "--dataset", "data", "--keep-within", "soon")
		})
	})

	t.Run("UsageErrors", func(t *testing.T) {
		e := e.in(t)
		unchanged(t, func() {
			for _, args := range [][]string{
				{"restore", v},               // no --target
				{"restore", "--target", out}, // no version
				{"restore", v, "--target"},   // flag without value
				{"snapshot"},
				{"snapshot", src, src},
				{"snapshot", filepath.Join(src, "a.txt")}, // not a directory
				{"snapshot", filepath.Join(src, "missing")},
				{"snapshot", "--dataset", "bad name!", src},
				{"diff", v},
				{"ls"},
				{"log", "--no-such-flag"},
				{"no-such-command"},
				{"key", "remove"},
				{"prune", "--safety-margin", "sometime"},
			} {
				r := e.run(args...)
				assertFailure(t, r, 2)
			}
		})
	})
}

// replaceFile replaces a read-only vault file.
func replaceFile(t *testing.T, path string, b []byte) {
	t.Helper()
	os.Remove(path)
	if err := os.WriteFile(path, b, 0o400); err != nil {
		t.Fatal(err)
	}
}

// unchangedVault runs f and fails t if the directory changed meanwhile.
func unchangedVault(t *testing.T, dir string, f func()) {
	t.Helper()
	before := vaultListing(t, dir)
	f()
	assertUnchanged(t, dir, before)
}

// TestSnapshotOnFullDiskFailsCleanly puts a vault on a 4 MiB tmpfs and
// snapshots 16 MiB of random data into it.
func TestSnapshotOnFullDiskFailsCleanly(t *testing.T) {
	t.Parallel()
	if !isRoot() {
		t.Skip("needs root to mount a small tmpfs")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", mnt, err, out)
		}
	})
	e := newEnv(t)
	e.vault = filepath.Join(mnt, "vault")
	e.ok("init")
	rng := newRand(t)
	big := filepath.Join(t.TempDir(), "big")
	testkit.WriteFile(t, filepath.Join(big, "a.bin"), testkit.RandomBytes(rng.Uint64(), 8<<20))
	testkit.WriteFile(t, filepath.Join(big, "b.bin"), testkit.RandomBytes(rng.Uint64(), 8<<20))

	before := vaultListing(t, e.vault)
	r := e.run("snapshot", big)
	assertFailure(t, r, 1, "space")
	if n := len(objects(t, e.vault, "versions")); n != 0 {
		t.Errorf("a failed snapshot left %d versions", n)
	}
	if left := objects(t, e.vault, "tmp"); len(left) > 0 {
		t.Errorf("the failed snapshot left %d temporary files in %s/tmp, taking space on the full disk until a prune long after", len(left), e.vault)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(mnt, &st); err == nil {
		t.Logf("after the failed snapshot: %d of %d KiB free", st.Bavail*uint64(st.Bsize)>>10, st.Blocks*uint64(st.Bsize)>>10)
	}
	var after []string
	for _, l := range vaultListing(t, e.vault) {
		if !strings.HasPrefix(l, "tmp/") && !strings.HasPrefix(l, "data/") {
			after = append(after, l)
		}
	}
	var beforeNoTmp []string
	for _, l := range before {
		if !strings.HasPrefix(l, "tmp/") && !strings.HasPrefix(l, "data/") {
			beforeNoTmp = append(beforeNoTmp, l)
		}
	}
	if strings.Join(after, "\n") != strings.Join(beforeNoTmp, "\n") {
		t.Errorf("the failed snapshot changed the vault beyond data/ and tmp/:\nbefore %q\nafter  %q", beforeNoTmp, after)
	}
	e.checkClean()

	// Free space (as a user deleting other files would), then carry on.
	if out, err := exec.Command("mount", "-o", "remount,size=64m", mnt).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v %s", err, out)
	}
	e.checkClean()
	small := filepath.Join(t.TempDir(), "small")
	testkit.WriteFile(t, filepath.Join(small, "s.txt"), textBytes(rng, 100_000))
	s := e.snapshot(small)
	compareTrees(t, small, e.restore(s.Version))
	e.checkClean("--read-data")
}
