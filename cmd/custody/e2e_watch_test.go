package main_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/testkit"
)

// watchedDir is a directory that uid 65534 may write in: t.TempDir's
// parents may be closed to other users.
func watchedDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "custody-watch-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

// perlOps does file operations in one process that outlives them by half
// a second, so that each event can be attributed: a process gone before
// its event is read is "unknown", never guessed. $ARGV[0] is the
// directory, $ARGV[1] an odd file name.
const perlOps = `chdir $ARGV[0] or die;
open(F, ">", "a.txt") or die; print F "one\n"; close F;
open(F, ">>", "a.txt") or die; print F "two\n"; close F;
rename("a.txt", "b.txt") or die; chmod(0600, "b.txt") or die;
mkdir("sub") or die; open(F, ">", "sub/$ARGV[1]") or die; close F;
unlink("b.txt") or die; select(undef, undef, undef, 0.5);`

// asNobody runs a shell script as uid and gid 65534, with args as $1...
func asNobody(t *testing.T, script string, args ...string) {
	t.Helper()
	out, err := exec.Command("setpriv", append([]string{"--reuid", "65534", "--regid", "65534", "--clear-groups", "sh", "-c", script, "sh"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("setpriv: %v\n%s", err, out)
	}
}

type watchedEntry struct {
	Index  int64             `json:"index"`
	Kind   string            `json:"kind"`
	Path   string            `json:"path"`
	Detail map[string]string `json:"detail"`
	Actor  struct {
		UID  *uint32 `json:"uid"`
		User string  `json:"user"`
		Exe  string  `json:"exe"`
	} `json:"actor"`
}

// watchWhile runs `custody watch dir` (with flags) while fn runs, then
// stops it with SIGINT as a user would.
func (e *env) watchWhile(dir string, flags []string, fn func()) result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := e.command(ctx, nil, append(append([]string{"--json", "watch"}, flags...), dir)...)
	var stdout, stderr lockedBuffer // read while the command writes
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(stderr.String(), "watching") { // the marks are in place
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			e.t.Fatalf("watch did not start:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	fn()
	time.Sleep(500 * time.Millisecond) // past the coalescing window
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	r := result{args: []string{"watch", dir}, stdout: stdout.String(), stderr: stderr.String()}
	if err != nil {
		e.t.Fatalf("watch: %v\n%s", err, r)
	}
	return r
}

// lockedBuffer is a bytes.Buffer safe to read while a command writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (e *env) fileEntries(dir string) []watchedEntry {
	e.t.Helper()
	var rows []watchedEntry
	e.okJSON(&rows, "audit", "log", "--path", dir)
	var out []watchedEntry
	for _, r := range rows {
		if strings.HasPrefix(r.Kind, "file.") {
			out = append(out, r)
		}
	}
	return out
}

func TestWatchRecordsWhoChangedWhichFile(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("fanotify needs root")
	}
	t.Parallel()
	e := newVault(t)
	dir := watchedDir(t)
	odd := "name with spaces\nand a newline \xff"
	e.watchWhile(dir, []string{"--backend", "fanotify"}, func() {
		asNobody(t, `exec perl -e "$1" "$2" "$3"`, perlOps, dir, odd)
	})
	rows := e.fileEntries(dir)
	if len(rows) == 0 {
		t.Fatal("no file events recorded")
	}
	seen := map[string]bool{}
	for _, r := range rows {
		if r.Actor.UID == nil || *r.Actor.UID != 65534 || r.Actor.User != "nobody" || !strings.HasSuffix(r.Actor.Exe, "perl") {
			t.Errorf("%s %s: uid %v user %q exe %q, want 65534, nobody, perl", r.Kind, r.Path, r.Actor.UID, r.Actor.User, r.Actor.Exe)
		}
		seen[r.Kind+" "+strings.TrimPrefix(r.Path, dir+"/")] = true
	}
	for _, want := range []string{"file.create a.txt", "file.rename b.txt", "file.attrib b.txt", "file.create sub", "file.create sub/name with spaces\nand a newline \\xff", "file.delete b.txt"} {
		if !seen[want] {
			t.Errorf("no %q event; recorded: %v", want, seen)
		}
	}
	e.ok("audit", "verify")
}

func TestWatchWithInotifyRecordsChangesButNotWho(t *testing.T) {
	t.Parallel()
	e := newVault(t)
	dir := watchedDir(t)
	r := e.watchWhile(dir, []string{"--backend", "inotify"}, func() {
		script := `cd "$1" && echo one > a.txt && mv a.txt b.txt && mkdir -p sub/deeper && touch sub/deeper/f && rm b.txt`
		if os.Geteuid() == 0 {
			asNobody(t, script, dir)
		} else if out, err := exec.Command("sh", "-c", script, "sh", dir).CombinedOutput(); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	})
	if !strings.Contains(r.stderr, "cannot tell who") {
		t.Errorf("watch with inotify does not say events carry no principal:\n%s", r.stderr)
	}
	seen := map[string]bool{}
	for _, row := range e.fileEntries(dir) {
		if row.Actor.UID != nil {
			t.Errorf("%s %s carries uid %d from inotify", row.Kind, row.Path, *row.Actor.UID)
		}
		seen[row.Kind+" "+strings.TrimPrefix(row.Path, dir+"/")] = true
	}
	for _, want := range []string{"file.create a.txt", "file.create sub", "file.create sub/deeper/f", "file.delete b.txt"} {
		if !seen[want] {
			t.Errorf("no %q event; recorded: %v", want, seen)
		}
	}
	if !seen["file.rename b.txt"] && !seen["file.create b.txt"] {
		t.Errorf("the rename to b.txt is not recorded: %v", seen)
	}
}

func TestCustodyReportNamesWhoChangedTheDataBetweenVersions(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("fanotify needs root")
	}
	t.Parallel()
	e := newVault(t)
	dir := watchedDir(t)
	testkit.WriteFile(t, dir+"/seed.csv", []byte("1"))
	os.Chmod(dir+"/seed.csv", 0o666)
	e.snapshot(dir)
	e.watchWhile(dir, []string{"--backend", "fanotify"}, func() {
		asNobody(t, `exec perl -e 'chdir $ARGV[0]; open(F, ">>", "seed.csv"); print F "2"; close F; open(F, ">", "new.csv"); close F; select(undef, undef, undef, 0.5)' "$1"`, dir)
	})
	e.snapshot(dir)
	var rep struct {
		Periods []struct {
			Version *struct {
				ID string `json:"id"`
			} `json:"version"`
			People []struct {
				User   string   `json:"user"`
				UID    *uint32  `json:"uid"`
				Paths  []string `json:"paths"`
				Events int      `json:"events"`
			} `json:"people"`
		} `json:"periods"`
	}
	e.okJSON(&rep, "report", "custody", dir)
	if len(rep.Periods) != 3 || rep.Periods[1].Version == nil {
		t.Fatalf("report periods: %+v", rep.Periods)
	}
	p := rep.Periods[1].People
	if len(p) != 1 || p[0].UID == nil || *p[0].UID != 65534 || len(p[0].Paths) != 2 {
		t.Fatalf("changes before the second version: %+v", p)
	}
	page := t.TempDir() + "/report.html"
	e.ok("report", "custody", dir, "--html", page)
	b, err := os.ReadFile(page)
	if err != nil || !strings.Contains(string(b), "new.csv") {
		t.Fatalf("HTML report: %v", err)
	}
}
