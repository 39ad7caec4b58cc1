package main_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/testkit"
)

type incidentRow struct {
	ID         int64
	State      string
	Severity   string
	UID        *uint32
	Datasets   []string
	FirstEvent time.Time
	Recovery   map[string]string
	Actions    []struct{ Action, Outcome string }
}

// guardWhile runs `custody guard [flags] dir` (no dir when "") while fn
// runs, then stops it.
func (e *env) guardWhile(dir string, flags []string, fn func()) result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	args := append([]string{"guard"}, flags...)
	if dir != "" {
		args = append(args, dir)
	}
	cmd := e.command(ctx, nil, args...)
	var stdout, stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(stderr.String(), "guarding") {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			e.t.Fatalf("guard did not start:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	fn()
	time.Sleep(500 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	r := result{args: []string{"guard", dir}, stdout: stdout.String(), stderr: stderr.String()}
	if err != nil {
		e.t.Fatalf("guard: %v\n%s", err, r)
	}
	return r
}

// waitForIncidents waits until the catalog lists at least n incidents.
func (e *env) waitForIncidents(n int) {
	e.t.Helper()
	testkit.WaitFor(e.t, testkit.Long, fmt.Sprintf("%d incidents listed", n), func() bool {
		var incs []incidentRow
		r := e.run("--json", "incidents", "list")
		return r.code == 0 && decodeJSON(r.stdout, &incs) == nil && len(incs) >= n
	})
}

// waitForRecoveryPoint waits until an incident has a recovery point for
// dataset: the guard has taken its snapshot.
func (e *env) waitForRecoveryPoint(dataset string) {
	e.t.Helper()
	testkit.WaitFor(e.t, testkit.Long, "an incident's recovery point for "+dataset, func() bool {
		var incs []incidentRow
		r := e.run("--json", "incidents", "list")
		return r.code == 0 && decodeJSON(r.stdout, &incs) == nil && len(incs) > 0 && incs[0].Recovery[dataset] != ""
	})
}

// nobodyGuards serialises the tests whose guard may lock uid 65534 out:
// one lockout of it at a time. They run beside every other parallel test.
var nobodyGuards sync.Mutex

// guardTest marks a test that guards trees uid 65534 works in.
func guardTest(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("fanotify and lockout need root")
	}
	t.Parallel()
	nobodyGuards.Lock()
	t.Cleanup(nobodyGuards.Unlock)
}

// drillAsNobody runs a drill worker as uid 65534 and returns its exit code
// and output; -1 and why when it did not exit by itself (a lockout killed it).
func drillAsNobody(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command("setpriv", append([]string{"--reuid", "65534", "--regid", "65534", "--clear-groups", custodyBin, "drill-worker"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil || errors.As(err, &ee) && ee.Exited():
		return cmd.ProcessState.ExitCode(), out.String()
	case cmd.ProcessState != nil:
		return -1, fmt.Sprintf("%s%v", out.String(), err)
	}
	t.Fatalf("drill-worker: %v\n%s", err, out.String())
	return -1, ""
}

// openAsNobody reports whether uid 65534 can read path.
func openAsNobody(path string) bool {
	return exec.Command("setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "cat", path).Run() == nil
}

func TestGuardStopsRansomwareAndRecoversEveryFile(t *testing.T) {
	guardTest(t)
	e := newVault(t)
	dir := watchedDir(t)
	data := filepath.Join(dir, "train")
	if code, out := drillAsNobody(t, "prepare", "--dir", data, "--files", "300"); code != 0 {
		t.Fatalf("prepare: exit %d\n%s", code, out)
	}
	before := testkit.ReadTree(t, data)
	var progress lockedBuffer
	var frozen bool
	r := e.guardWhile(data, []string{"--backend", "fanotify"}, func() {
		attack := exec.Command("setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", custodyBin, "drill-worker",
			"attack", "--variant", "encrypt-in-place", "--dir", data, "--rate", "100")
		attack.Stdout, attack.Stderr = &progress, &progress
		if err := attack.Start(); err != nil {
			t.Fatal(err)
		}
		defer attack.Wait()
		defer attack.Process.Kill()
		// The guard freezes the attacker (SIGSTOP) when it locks it out.
		deadline := time.Now().Add(60 * time.Second)
		for !frozen && time.Now().Before(deadline) {
			stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", attack.Process.Pid))
			if err != nil {
				break // it ended: not stopped
			}
			if f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:])); len(f) > 0 && f[0] == "T" {
				frozen = true
			}
			time.Sleep(20 * time.Millisecond)
		}
		// The lockout holds while the guard runs: nobody cannot open, root can.
		victim := filepath.Join(data, "README.md")
		if openAsNobody(victim) {
			t.Error("uid 65534 can still open files in the protected tree after the lockout")
		}
		if _, err := os.ReadFile(victim); err != nil {
			t.Errorf("root cannot read %s during the lockout: %v", victim, err)
		}
		e.waitForRecoveryPoint("train") // the snapshot the guard takes in the background
	})
	if !frozen {
		t.Errorf("the attacker was not frozen\nattack: %s\nguard:\n%s", progress.String(), r)
	}
	damaged := strings.Count(progress.String(), "\"op\"")
	t.Logf("files damaged before the lockout: %d of %d", damaged, len(before))

	var incs []incidentRow
	e.okJSON(&incs, "incidents", "list")
	if len(incs) != 1 {
		t.Fatalf("want 1 incident, got %d\n%s", len(incs), r)
	}
	in := incs[0]
	if in.UID == nil || *in.UID != 65534 || in.Severity != "critical" || in.State != "contained" || in.Recovery["train"] == "" {
		t.Errorf("incident %+v: want uid 65534, critical, contained, a recovery point", in)
	}
	if st := e.run("--json", "gate", "status"); !strings.Contains(st.stdout, "incident") {
		t.Errorf("the gate was not closed by the incident:\n%s", st)
	}
	if lk := e.ok("lockouts", "list"); !strings.Contains(lk.stdout, "65534") {
		t.Errorf("no lockout listed:\n%s", lk)
	}

	e.ok("incidents", "recover", "1", "--restore")
	after := testkit.ReadTree(t, data)
	for p, b := range before {
		if !bytes.Equal(after[p], b) {
			t.Errorf("%s was not recovered", p)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s is left over after recovery", p)
		}
	}
	e.ok("lockouts", "release", "65534")
	if lk := e.ok("lockouts", "list"); strings.Contains(lk.stdout, "65534") {
		t.Errorf("lockout still listed after release:\n%s", lk)
	}
}

func TestGuardOpensNoIncidentForBenignWork(t *testing.T) {
	guardTest(t)
	e := newVault(t)
	dir := watchedDir(t)
	data := filepath.Join(dir, "work")
	if code, out := drillAsNobody(t, "prepare", "--dir", data, "--files", "500"); code != 0 {
		t.Fatalf("prepare: exit %d\n%s", code, out)
	}
	var failed string // a workload that failed, and why
	r := e.guardWhile(data, []string{"--backend", "fanotify"}, func() {
		for _, w := range []string{"extract-tar", "gzip-many", "checkpoints", "package-cache", "git-checkout", "clean-csv"} {
			if _, err := exec.LookPath("git"); err != nil && w == "git-checkout" {
				continue
			}
			if code, out := drillAsNobody(t, "benign", "--workload", w, "--dir", data, "--scale", "1000"); code != 0 {
				failed = fmt.Sprintf("%s: exit %d\n%s", w, code, out)
				return
			}
		}
	})
	if failed != "" { // killed by a lockout, or failed by itself: the incidents say which
		show := e.run("incidents", "show", "1")
		t.Fatalf("benign workload %s\nincident:\n%s\nguard:\n%s", failed, show, r)
	}
	// The guard saw the work: its events are in the ledger.
	if n := len(e.fileEntries(data)); n < 5000 {
		t.Fatalf("only %d file events recorded for the benign work: the guard did not see it\n%s", n, r)
	}
	var incs []incidentRow
	e.okJSON(&incs, "incidents", "list")
	if len(incs) != 0 {
		show := e.run("incidents", "show", "1")
		t.Errorf("benign work opened %d incidents:\n%s\nguard:\n%s", len(incs), show, r)
	}
}

func TestGuardFromConfigEnforcesFrozenDatasets(t *testing.T) {
	guardTest(t)
	e := newVault(t)
	dir := watchedDir(t)
	frozen, open := filepath.Join(dir, "release"), filepath.Join(dir, "scratch")
	for _, d := range []string{frozen, open} {
		if err := os.Mkdir(d, 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o777); err != nil { // past the umask
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "model.json"), []byte(`{"v": 1}`+"\n"), 0o666); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(d, "model.json"), 0o666); err != nil { // past the umask
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(t.TempDir(), "custody.yaml")
	yaml := fmt.Sprintf("guard:\n  canaries: false\ndatasets:\n  - name: release\n    path: %s\n    stage: deploy\n    frozen: true\n  - name: scratch\n    path: %s\n    stage: explore\n", frozen, open)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	e.ok("config", "check", cfg)
	r := e.guardWhile("", []string{"--config", cfg}, func() {
		// Writing to the open dataset is nobody's business; to the frozen
		// one it is an incident.
		asNobody(t, `set -e; for i in 1 2 3; do echo x > "$1/new-$i.txt"; done; echo y > "$2/model.json"; sleep 0.5`, open, frozen)
		// The writes to the open dataset came first: once the frozen one's
		// incident is open, the guard has judged them too.
		e.waitForIncidents(1)
	})
	var incs []incidentRow
	e.okJSON(&incs, "incidents", "list")
	if len(incs) != 1 || len(incs[0].Datasets) != 1 || incs[0].Datasets[0] != "release" {
		t.Fatalf("want one incident on release, got %+v\n%s", incs, r)
	}
	if show := e.ok("incidents", "show", "1"); !strings.Contains(show.stdout, "frozen") {
		t.Errorf("the incident does not name the frozen detector:\n%s", show)
	}
	if bad := e.run("guard", "--config", cfg, "--frozen", "x"); bad.code != 2 {
		t.Errorf("--config with --frozen: want exit 2\n%s", bad)
	}
}
