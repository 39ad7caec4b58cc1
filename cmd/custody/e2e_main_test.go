package main_test

// The end-to-end tests build the custody binary once and drive it as a user
// would: through its command line, environment and exit codes, against
// vaults and datasets in per-test temporary directories.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/cli"
	"github.com/custodyhq/custody/internal/vault"
)

// custodyBin is the binary under test, built by TestMain.
var custodyBin string

// TestMain builds custody once for every test. CUSTODY_E2E_RACE=1 builds it
// with the race detector (slower, but the subprocesses are then checked too).
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "custody-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	custodyBin = filepath.Join(dir, "custody")
	args := []string{"build", "-o", custodyBin}
	if os.Getenv("CUSTODY_E2E_RACE") == "1" {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/custody: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// commandTimeout bounds one custody run, so a hang fails the test instead of
// stalling the suite.
const commandTimeout = 3 * time.Minute

const testPassphrase = "correct horse battery staple"

// env is one user's setup: a vault location, a cache and a passphrase.
type env struct {
	t     *testing.T
	vault string
	cache string
	pass  string
	extra []string // more environment for every run ("K=V")
}

// newEnv returns an env whose vault does not exist yet.
func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	return &env{t: t, vault: filepath.Join(dir, "vault"), cache: filepath.Join(dir, "cache"), pass: testPassphrase}
}

// newVault returns an env with an initialised vault.
func newVault(t *testing.T) *env {
	t.Helper()
	e := newEnv(t)
	e.ok("init")
	return e
}

// in returns a copy of e that reports to t, for subtests.
func (e *env) in(t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}

// result is what one custody run produced.
type result struct {
	args           []string
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("custody %s: exit %d\n--- stdout:\n%s--- stderr:\n%s", quoteArgs(r.args), r.code, r.stdout, r.stderr)
}

func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = a
		if a == "" || strings.ContainsAny(a, " \t\n\"'\\") || !isPrintable(a) {
			q[i] = strconv.Quote(a)
		}
	}
	return strings.Join(q, " ")
}

func isPrintable(s string) bool {
	for _, r := range s {
		if !strconv.IsPrint(r) {
			return false
		}
	}
	return true
}

// environ is the process environment of a custody run: the test's own,
// without any CUSTODY_ variable, then the env's, then extra (which wins).
func (e *env) environ(extra []string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CUSTODY_") {
			out = append(out, kv)
		}
	}
	out = append(out, "CUSTODY_PASSWORD="+e.pass, "CUSTODY_VAULT="+e.vault, "CUSTODY_CACHE="+e.cache)
	out = append(out, e.extra...)
	return append(out, extra...)
}

// command prepares a custody run. It runs in its own session, so that it has
// no terminal to prompt on.
func (e *env) command(ctx context.Context, extra []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, custodyBin, args...)
	cmd.Env = e.environ(extra)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// runEnv runs custody with extra environment variables ("K=V"; "K=" unsets
// a passphrase variable, which custody treats as empty). It runs in this
// process, through the same entry point as the binary, with the env's
// environment and no terminal; it never calls t.Fatal, so other goroutines
// may use it. Runs that need a process of their own (daemons, kills, other
// users) use command.
func (e *env) runEnv(extra []string, args ...string) result {
	return runInProcess(e.environ(extra), args...)
}

// runInProcess runs custody's command line in this process with environ
// ("K=V", the last of a key wins) as its whole environment.
func runInProcess(environ []string, args ...string) result {
	vars := make(map[string]string, len(environ))
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := cli.Run(ctx, args, cli.Env{
		Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr,
		Getenv:     func(k string) string { return vars[k] },
		NoTerminal: true,
		KDF:        testKDF,
	})
	return result{args: args, stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// testKDF makes the vaults the tests create cheap to open, in this process
// and in every subprocess alike: the cost is stored in the key file.
var testKDF = vault.KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}

// collect runs cmd, a custody run with args, and returns its output and
// exit code; err is for a run that did not exit by itself.
func collect(cmd *exec.Cmd, args []string) (result, error) {
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{args: args, stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		r.code = ee.ExitCode()
	default:
		return r, err
	}
	return r, nil
}

func (e *env) run(args ...string) result {
	e.t.Helper()
	return e.runEnv(nil, args...)
}

// ok runs custody and fails the test unless it exits 0.
func (e *env) ok(args ...string) result {
	e.t.Helper()
	r := e.run(args...)
	if r.code != 0 {
		e.t.Fatalf("want exit 0, got\n%s", r)
	}
	return r
}

// okJSON runs custody with --json, wants exit 0, and decodes stdout into v.
func (e *env) okJSON(v any, args ...string) result {
	e.t.Helper()
	r := e.ok(append([]string{"--json"}, args...)...)
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		e.t.Fatalf("stdout is not the expected JSON: %v\n%s", err, r)
	}
	return r
}

// fails runs custody, wants exit code want, and a clear one-line error on
// stderr ("custody: ...") that contains each of the phrases
// (case-insensitive). It returns the run.
func (e *env) fails(want int, phrases []string, args ...string) result {
	e.t.Helper()
	return e.failsEnv(nil, want, phrases, args...)
}

func (e *env) failsEnv(extra []string, want int, phrases []string, args ...string) result {
	e.t.Helper()
	r := e.runEnv(extra, args...)
	assertFailure(e.t, r, want, phrases...)
	return r
}

func assertFailure(t *testing.T, r result, want int, phrases ...string) {
	t.Helper()
	if r.code != want {
		t.Errorf("want exit %d, got\n%s", want, r)
		return
	}
	// Logged warnings may come first; the error is one line of its own.
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(r.stderr, "\n"), "\n") {
		if !strings.Contains(l, "level=WARN") {
			lines = append(lines, l)
		}
	}
	msg := strings.Join(lines, "\n")
	if len(lines) != 1 || !strings.HasPrefix(msg, "custody: ") {
		t.Errorf("want one error line \"custody: ...\" on stderr, got\n%s", r)
	}
	for _, p := range phrases {
		if !strings.Contains(strings.ToLower(msg), strings.ToLower(p)) {
			t.Errorf("error message does not say %q:\n%s", p, r)
		}
	}
}

// snapshotJSON is the output of snapshot --json.
type snapshotJSON struct {
	Version     string  `json:"version"`
	Dataset     string  `json:"dataset"`
	Tree        string  `json:"tree"`
	Parent      string  `json:"parent"`
	Files       uint64  `json:"files"`
	Dirs        uint64  `json:"dirs"`
	Bytes       uint64  `json:"bytes"`
	NewBytes    uint64  `json:"new_bytes"`
	StoredBytes uint64  `json:"stored_bytes"`
	Seconds     float64 `json:"seconds"`
	Skipped     int     `json:"skipped"`
}

// snapshot takes a version of dir and returns the snapshot's JSON.
func (e *env) snapshot(dir string, flags ...string) snapshotJSON {
	e.t.Helper()
	r := e.ok(append(append([]string{"--json", "snapshot"}, flags...), dir)...)
	return decodeSnapshot(e.t, r)
}

func decodeSnapshot(t *testing.T, r result) snapshotJSON {
	t.Helper()
	var s snapshotJSON
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("snapshot --json: %v\n%s", err, r)
	}
	if len(s.Version) != 64 {
		t.Fatalf("snapshot printed version %q, want 64 hex characters\n%s", s.Version, r)
	}
	return s
}

// logJSON is one entry of log --json.
type logJSON struct {
	Version string    `json:"version"`
	Dataset string    `json:"dataset"`
	Time    time.Time `json:"time"`
	Parent  *string   `json:"parent"`
	Message string    `json:"message"`
	Files   uint64    `json:"files"`
	Bytes   uint64    `json:"bytes"`
}

func (e *env) log(flags ...string) []logJSON {
	e.t.Helper()
	var l []logJSON
	e.okJSON(&l, append([]string{"log"}, flags...)...)
	return l
}

// restore restores what (VERSION[:path]) into a new directory and returns it.
func (e *env) restore(what string, flags ...string) string {
	e.t.Helper()
	target := filepath.Join(e.t.TempDir(), "restored")
	unlockOnCleanup(e.t, target)
	e.ok(append([]string{"restore", what, "--target", target}, flags...)...)
	return target
}

// checkClean runs check (with flags) and wants exit 0 and "no damage found".
func (e *env) checkClean(flags ...string) {
	e.t.Helper()
	r := e.ok(append([]string{"check"}, flags...)...)
	if !strings.Contains(r.stdout, "no damage found") {
		e.t.Errorf("check exit 0 but did not report a clean vault:\n%s", r)
	}
}

// newRand returns a seeded generator and logs the seed; CUSTODY_E2E_SEED
// replays a run.
func newRand(t *testing.T) *rand.Rand {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CUSTODY_E2E_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("CUSTODY_E2E_SEED: %v", err)
		}
	}
	t.Logf("random seed %d (set CUSTODY_E2E_SEED to replay)", seed)
	return newRandSeed(seed)
}

func newRandSeed(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }

// isRoot reports whether the tests run as root (owners can then be set and compared).
func isRoot() bool { return os.Geteuid() == 0 }

func decodeJSON(s string, v any) error { return json.Unmarshal([]byte(s), v) }

// unlockOnCleanup makes the directories under dir writable before the test's
// temporary directories are removed: without root, a restored read-only
// directory could not be emptied.
func unlockOnCleanup(t *testing.T, dir string) {
	if isRoot() {
		return
	}
	t.Cleanup(func() {
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(p, 0o700)
			}
			return nil
		})
	})
}
