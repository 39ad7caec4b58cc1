package main_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/backend/s3test"
	"github.com/custodyhq/custody/internal/testkit"
)

// attackRun is what one attack under a guard did.
type attackRun struct {
	guard    result
	progress []attackProgress // one per file damaged, in order
	summary  string           // the attacker's stderr
	frozen   bool             // the guard froze it (state T) before the budget ran out
	exited   bool             // it ended before it was frozen
	status   string           // how it ended ("exit status 3", "signal: killed")
	start    time.Time        // when the attacker was started
	stopped  time.Time        // when it was seen frozen or ended
	planted  int              // files in the tree at that moment that were not before
	changed  int              // files of the tree changed or gone at that moment
	reported bool             // the evidence was put in a failure message
}

// attackProgress is one line of the attacker's progress (drill.ProgressLine).
type attackProgress struct {
	Time time.Time `json:"time"`
	Path string    `json:"path"`
	Op   string    `json:"op"`
	To   string    `json:"to"`
}

// report is the evidence for a failure message: the attacker's summary,
// the incident as custody shows it, and the guard's output; only once.
func (a *attackRun) report(e *env) string {
	e.t.Helper()
	if a.reported {
		return "(the attacker, incident and guard output are above)"
	}
	a.reported = true
	show := e.run("incidents", "show", "1")
	return fmt.Sprintf("attacker: %d files damaged, frozen %v, ended %v (%s)\n%s\n%s\nguard:\n%s",
		len(a.progress), a.frozen, a.exited, a.status, a.summary, show, a.guard)
}

// untilFirstDamage is how long the attacker ran from its first damaged
// file until it was seen frozen or ended; 0 when it damaged none.
func (a *attackRun) untilFirstDamage() time.Duration {
	if len(a.progress) == 0 {
		return 0
	}
	return a.stopped.Sub(a.progress[0].Time)
}

// attackUnderGuard runs `custody guard data --backend fanotify` while uid
// 65534 attacks data with variant (rate in files per second, "" for the
// variant's own), and waits until the guard freezes the attacker, it ends,
// or budget passes. While the attacker is frozen and the guard still
// runs, it checks that the lockout holds: uid 65534 cannot open a file
// left in the tree, root can. The attacker is killed before the guard
// stops.
func attackUnderGuard(t *testing.T, e *env, data string, before map[string][]byte, variant, rate string, budget time.Duration) attackRun {
	t.Helper()
	var a attackRun
	var stdout, stderr lockedBuffer
	a.guard = e.guardWhile(data, []string{"--backend", "fanotify"}, func() {
		args := []string{"--reuid", "65534", "--regid", "65534", "--clear-groups", custodyBin, "drill-worker",
			"attack", "--variant", variant, "--dir", data}
		if rate != "" {
			args = append(args, "--rate", rate)
		}
		attack := exec.Command("setpriv", args...)
		attack.Stdout, attack.Stderr = &stdout, &stderr
		a.start = time.Now()
		if err := attack.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait does not return for a stopped child: done closes only when
		// the attacker really ended.
		done := make(chan struct{})
		go func() { attack.Wait(); close(done) }()
		defer func() { attack.Process.Kill(); <-done }()

		deadline := time.NewTimer(budget)
		defer deadline.Stop()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
	wait:
		for {
			select {
			case <-done:
				a.exited, a.status = true, attack.ProcessState.String()
				break wait
			case <-deadline.C:
				break wait
			case <-tick.C:
				if processState(attack.Process.Pid) == "T" {
					a.frozen = true
					break wait
				}
			}
		}
		a.stopped = time.Now()
		now := testkit.ReadTree(t, data)
		for p, b := range before {
			if !bytes.Equal(now[p], b) {
				a.changed++
			}
		}
		var left []string
		for p := range now {
			if _, ok := before[p]; !ok {
				a.planted++
			} else {
				left = append(left, p)
			}
		}
		if !a.frozen {
			return
		}
		// The lockout holds while the guard runs: nobody cannot open a file
		// still in the tree, root can. The last in walk order is the one an
		// attack reaches last.
		slices.Sort(left)
		if len(left) == 0 {
			t.Errorf("no file of the tree is left to check the lockout on")
		} else {
			victim := filepath.Join(data, filepath.FromSlash(left[len(left)-1]))
			if openAsNobody(victim) {
				t.Errorf("uid 65534 can still open %s after the lockout", victim)
			}
			if _, err := os.ReadFile(victim); err != nil {
				t.Errorf("root cannot read %s during the lockout: %v", victim, err)
			}
		}
		e.waitForRecoveryPoint(filepath.Base(data)) // the snapshot the guard takes in the background
	})
	a.summary = stderr.String()
	sc := bufio.NewScanner(strings.NewReader(stdout.String()))
	for sc.Scan() {
		var p attackProgress
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			t.Fatalf("attacker progress line %q: %v", sc.Text(), err)
		}
		a.progress = append(a.progress, p)
	}
	return a
}

// processState is the state letter of /proc/PID/stat ("R", "S", "T",
// "Z", ...), or "" when the process is gone.
func processState(pid int) string {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	if f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:])); len(f) > 0 {
		return f[0]
	}
	return ""
}

// checkContained checks that the guard handled a run as one contained
// incident of uid 65534 with a recovery point for dataset, that it closed
// the gate and that the lockout is listed.
func checkContained(t *testing.T, e *env, a *attackRun, dataset string) {
	t.Helper()
	var incs []incidentRow
	e.okJSON(&incs, "incidents", "list")
	if len(incs) != 1 {
		t.Fatalf("want 1 incident, got %d\n%s", len(incs), a.report(e))
	}
	in := incs[0]
	if in.UID == nil || *in.UID != 65534 || in.State != "contained" || in.Recovery[dataset] == "" {
		uid := "none"
		if in.UID != nil {
			uid = fmt.Sprint(*in.UID)
		}
		t.Errorf("incident %d: uid %s, %s, %s, recovery points %v; want uid 65534, contained, a recovery point for %s\n%s",
			in.ID, uid, in.State, in.Severity, in.Recovery, dataset, a.report(e))
	}
	if st := e.run("--json", "gate", "status"); !strings.Contains(st.stdout, "incident") {
		t.Errorf("the gate was not closed by the incident:\n%s", st)
	}
	if lk := e.ok("lockouts", "list"); !strings.Contains(lk.stdout, "65534") {
		t.Errorf("no lockout listed:\n%s", lk)
	}
}

func TestGuardCatchesEveryAttackVariant(t *testing.T) {
	guardTest(t)
	// encrypt-in-place is TestGuardStopsRansomwareAndRecoversEveryFile's.
	for _, tc := range []struct {
		variant string
		rate    string // files per second; "" the variant's own
		budget  time.Duration
		// maxDamaged bounds the files damaged before the freeze; 0 for
		// slow, where the time to the freeze is what counts.
		maxDamaged int
	}{
		{"encrypt-rename", "100", 60 * time.Second, 20},
		{"intermittent-16", "100", 60 * time.Second, 20},
		{"intermittent-4k", "100", 60 * time.Second, 20},
		{"copy-delete", "100", 60 * time.Second, 20},
		{"mass-delete", "100", 60 * time.Second, 40}, // deletes need no open; wipe signals start after 25 unexplained deletes
		{"slow", "", 60 * time.Second, 0},
	} {
		t.Run(tc.variant, func(t *testing.T) {
			e := newVault(t)
			dir := watchedDir(t)
			data := filepath.Join(dir, "train")
			if code, out := drillAsNobody(t, "prepare", "--dir", data, "--files", "300"); code != 0 {
				t.Fatalf("prepare: exit %d\n%s", code, out)
			}
			before := testkit.ReadTree(t, data)
			a := attackUnderGuard(t, e, data, before, tc.variant, tc.rate, tc.budget)
			if !a.frozen {
				why := fmt.Sprintf("still running after %v", tc.budget)
				if a.exited {
					why = "it finished unfrozen"
				}
				t.Errorf("%s: the attacker was not frozen (%s)\n%s", tc.variant, why, a.report(e))
			}
			damaged := len(a.progress)
			end := "the freeze"
			if !a.frozen {
				end = "the end"
			}
			t.Logf("%s: %d files damaged before %s (%d changed or gone, %d planted in the tree); %v from the start and %v from the first damage to %s",
				tc.variant, damaged, end, a.changed, a.planted, a.stopped.Sub(a.start).Round(time.Millisecond), a.untilFirstDamage().Round(time.Millisecond), end)
			if tc.maxDamaged > 0 && damaged > tc.maxDamaged {
				t.Errorf("%s: %d files damaged before %s, want at most %d\n%s", tc.variant, damaged, end, tc.maxDamaged, a.report(e))
			}
			checkContained(t, e, &a, "train")

			e.ok("incidents", "recover", "1", "--restore")
			after := testkit.ReadTree(t, data)
			for p, b := range before {
				if _, ok := after[p]; !ok {
					t.Errorf("%s is still missing after recovery", p)
				} else if !bytes.Equal(after[p], b) {
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
		})
	}
}

func TestGuardClosedGateRefusesOffsitePush(t *testing.T) {
	guardTest(t)
	if k := os.Getenv("CUSTODY_TEST_S3"); k == "" || k == "versitygw" {
		s3test.Binary(skipOnFatal{t}) // built once; Start finds it
	}
	o := newOffsiteEnv(t)
	bucket := o.srv.Bucket(t, "", s3test.BucketOptions{Versioning: true})
	o.ok("offsite", "add", "dr", "s3://"+bucket+"/vault")

	dir := watchedDir(t)
	data := filepath.Join(dir, "train")
	if code, out := drillAsNobody(t, "prepare", "--dir", data, "--files", "300"); code != 0 {
		t.Fatalf("prepare: exit %d\n%s", code, out)
	}
	before := testkit.ReadTree(t, data)
	a := attackUnderGuard(t, o.env, data, before, "encrypt-in-place", "100", 60*time.Second)
	if !a.frozen {
		t.Fatalf("the attacker was not frozen\n%s", a.report(o.env))
	}
	checkContained(t, o.env, &a, "train")

	var gates []struct {
		ID string `json:"id"`
	}
	o.okJSON(&gates, "gate", "status")
	if len(gates) != 1 {
		t.Fatalf("want the incident's gate closed, got %+v", gates)
	}
	o.fails(1, []string{"offsite push refused", "gate " + gates[0].ID, "custody gate open"}, "offsite", "push", "dr")
	if vs, _ := o.versions(bucket, "vault/"); len(vs) != 0 {
		t.Fatalf("a refused push wrote %d objects", len(vs))
	}
	// The gate, and nothing else, held the push back.
	o.ok("gate", "open", gates[0].ID)
	o.push("dr")
}

// skipOnFatal turns a fatal failure into a skip: for finding an optional
// tool (the S3 server) that may not be buildable here.
type skipOnFatal struct{ testing.TB }

func (s skipOnFatal) Fatalf(format string, args ...any) {
	s.TB.Helper()
	s.TB.Skipf("S3 server unavailable: "+format, args...)
}

func (s skipOnFatal) Fatal(args ...any) {
	s.TB.Helper()
	s.TB.Skip(append([]any{"S3 server unavailable:"}, args...)...)
}
