package main_test

// The harness of the daemon's tests: a `custody protect` or `custody serve`
// run in the background, and an HTTPS client pinned to the certificate
// fingerprint it prints.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/server/tlscert"
)

// daemonStart bounds how long a daemon may take to say it is ready: its
// first start takes the baseline version of every dataset.
const daemonStart = 90 * time.Second

// daemonProc is a running `custody protect` or `custody serve`.
type daemonProc struct {
	t       *testing.T
	args    []string
	cmd     *exec.Cmd
	stdout  lockedBuffer
	stderr  lockedBuffer
	exited  chan struct{}
	waitErr error

	url, fingerprint string
	adminToken       string         // "" when the start printed none
	client           *http.Client   // pins fingerprint
	sent             map[string]int // API requests answered, by token secret
}

var (
	apiLine   = regexp.MustCompile(`(?m)^API:\s+(https://\S+)/api/v1\b`)
	certLine  = regexp.MustCompile(`(?m)^certificate:\s+sha256 ([0-9a-f:]+)$`)
	tokenLine = regexp.MustCompile(`(?m)^admin token:\s+(cst_\S+)`)
)

// startDaemon runs custody with args and the environment environ in the
// background, waits until it prints where its API is and answers /readyz,
// and stops it with SIGKILL when the test ends if it still runs.
func startDaemon(t *testing.T, environ []string, args ...string) *daemonProc {
	t.Helper()
	d := &daemonProc{t: t, args: args, exited: make(chan struct{}), sent: map[string]int{}}
	d.cmd = exec.Command(custodyBin, args...)
	d.cmd.Env = environ
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	d.cmd.Stdout, d.cmd.Stderr = &d.stdout, &d.stderr
	d.cmd.WaitDelay = 10 * time.Second
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.waitErr = d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() {
		select {
		case <-d.exited:
		default:
			d.cmd.Process.Kill()
			<-d.exited
		}
	})

	end := time.Now().Add(daemonStart)
	for !strings.Contains(d.stdout.String(), "Ctrl-C stops") {
		select {
		case <-d.exited:
			t.Fatalf("custody %s exited before it was ready: %v\n%s", quoteArgs(args), d.waitErr, d.output())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(end) {
			t.Fatalf("custody %s was not ready after %v\n%s", quoteArgs(args), daemonStart, d.output())
		}
	}
	out := d.stdout.String()
	api, cert := apiLine.FindStringSubmatch(out), certLine.FindStringSubmatch(out)
	if api == nil || cert == nil {
		t.Fatalf("custody %s did not print its API address and certificate fingerprint\n%s", quoteArgs(args), d.output())
	}
	d.url, d.fingerprint = api[1], cert[1]
	if m := tokenLine.FindStringSubmatch(out); m != nil {
		d.adminToken = m[1]
	}
	tc, err := tlscert.ClientConfig(d.fingerprint, "")
	if err != nil {
		t.Fatalf("the printed fingerprint %q: %v", d.fingerprint, err)
	}
	d.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	t.Cleanup(d.client.CloseIdleConnections)

	eventually(t, 30*time.Second, "/readyz to answer 200", func() (bool, string) {
		resp, err := d.client.Get(d.url + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Sprintf("%d %s", resp.StatusCode, b)
	})
	return d
}

func (d *daemonProc) output() string {
	return fmt.Sprintf("--- stdout:\n%s--- stderr:\n%s", d.stdout.String(), d.stderr.String())
}

// do sends one API request with token as bearer (body, if not nil, as
// JSON), decodes a 2xx response into out (if not nil) and returns the
// status and body.
func (d *daemonProc) do(method, path, token string, body, out any) (int, []byte) {
	d.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			d.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, d.url+path, rd)
	if err != nil {
		d.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		d.t.Fatalf("%s %s: %v\n%s", method, path, err, d.output())
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		d.t.Fatalf("%s %s: reading the response: %v", method, path, err)
	}
	d.sent[token]++
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(b, out); err != nil {
			d.t.Fatalf("%s %s: the response is not the expected JSON: %v\n%s", method, path, err, b)
		}
	}
	return resp.StatusCode, b
}

// get is do for a GET that must answer 200.
func (d *daemonProc) get(path, token string, out any) {
	d.t.Helper()
	if status, b := d.do(http.MethodGet, path, token, nil, out); status != http.StatusOK {
		d.t.Fatalf("GET %s: %d %s", path, status, b)
	}
}

// stop sends SIGTERM and wants the daemon to exit 0 within 15 s.
func (d *daemonProc) stop() {
	d.t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		d.t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-d.exited:
	case <-time.After(15 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
		d.t.Fatalf("custody %s did not exit within 15 s of SIGTERM\n%s", quoteArgs(d.args), d.output())
	}
	if d.waitErr != nil {
		d.t.Fatalf("custody %s after SIGTERM: %v, want exit 0\n%s", quoteArgs(d.args), d.waitErr, d.output())
	}
}

// kill sends SIGKILL and waits for the daemon to die.
func (d *daemonProc) kill() {
	d.cmd.Process.Kill()
	<-d.exited
}

// killDuring SIGKILLs the daemon as soon as cond holds (polled every
// 2 ms) while the job at jobPath runs, and reports whether it did: false
// when the job ended first.
func (d *daemonProc) killDuring(jobPath, token string, cond func() bool) bool {
	d.t.Helper()
	end, polled := time.Now().Add(time.Minute), time.Time{}
	for ; ; time.Sleep(2 * time.Millisecond) {
		if cond() {
			d.kill()
			return true
		}
		// Within the API's rate limit, however long the job takes.
		if time.Since(polled) > 100*time.Millisecond {
			polled = time.Now()
			var j apiJob
			d.get(jobPath, token, &j)
			if j.State == "done" || j.State == "failed" {
				d.t.Logf("%s ended (%s %s) before it could be killed: nothing to recover from", jobPath, j.State, j.Error)
				return false
			}
		}
		if time.Now().After(end) {
			d.t.Fatalf("%s: nothing to kill it at within a minute\n%s", jobPath, d.output())
		}
	}
}

// apiAuditEntry is one entry of GET /api/v1/audit.
type apiAuditEntry struct {
	Index int64 `json:"index"`
	Entry struct {
		Kind  string `json:"kind"`
		Actor struct {
			UID   *uint32 `json:"uid"`
			User  string  `json:"user"`
			PID   int     `json:"pid"`
			Exe   string  `json:"exe"`
			Token string  `json:"token"`
		} `json:"actor"`
		Dataset string            `json:"dataset"`
		Version string            `json:"version"`
		Path    string            `json:"path"`
		Outcome string            `json:"outcome"`
		Detail  map[string]string `json:"detail"`
	} `json:"entry"`
}

// audit returns every ledger entry GET /api/v1/audit?query matches,
// following the pages.
func (d *daemonProc) audit(token string, query url.Values) []apiAuditEntry {
	d.t.Helper()
	var all []apiAuditEntry
	query.Set("limit", "1000")
	for {
		var page struct {
			Entries []apiAuditEntry `json:"entries"`
			Next    *int64          `json:"next"`
		}
		d.get("/api/v1/audit?"+query.Encode(), token, &page)
		all = append(all, page.Entries...)
		if page.Next == nil {
			return all
		}
		query.Set("after", fmt.Sprint(*page.Next))
	}
}

type apiDataset struct {
	Name     string `json:"name"`
	Stage    string `json:"stage"`
	Path     string `json:"path"`
	Versions int    `json:"versions"`
	Latest   string `json:"latest"`
}

type apiVersions struct {
	Total    int `json:"total"`
	Versions []struct {
		ID      string `json:"id"`
		Parent  string `json:"parent"`
		Message string `json:"message"`
	} `json:"versions"`
}

type apiJob struct {
	ID     string          `json:"id"`
	State  string          `json:"state"`
	Error  string          `json:"error"`
	Result json.RawMessage `json:"result"`
}

func (d *daemonProc) datasets(token string) []apiDataset {
	d.t.Helper()
	var l struct {
		Datasets []apiDataset `json:"datasets"`
	}
	d.get("/api/v1/datasets", token, &l)
	return l.Datasets
}

func (d *daemonProc) versions(token, dataset string) apiVersions {
	d.t.Helper()
	var v apiVersions
	d.get("/api/v1/datasets/"+dataset+"/versions", token, &v)
	return v
}

// startJob POSTs to path, which must answer 202 with a job.
func (d *daemonProc) startJob(path, token string) apiJob {
	d.t.Helper()
	var j apiJob
	if status, b := d.do(http.MethodPost, path, token, nil, &j); status != http.StatusAccepted || j.ID == "" {
		d.t.Fatalf("POST %s: %d %s, want 202 with a job", path, status, b)
	}
	return j
}

// finishedJob polls the job at path until it is done; a failed job fails
// the test.
func (d *daemonProc) finishedJob(path, token string, within time.Duration) apiJob {
	d.t.Helper()
	var j apiJob
	eventually(d.t, within, "job "+path+" to finish", func() (bool, string) {
		j = apiJob{}
		d.get(path, token, &j)
		return j.State == "done" || j.State == "failed", j.State
	})
	if j.State != "done" {
		d.t.Fatalf("job %s: %s: %s\n%s", path, j.State, j.Error, d.output())
	}
	return j
}

// eventually polls cond every 50 ms until it holds, and fails the test
// if it does not within d; cond's string says what it saw last.
func eventually(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	end := time.Now().Add(d)
	for {
		ok, saw := cond()
		if ok {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("waited %v for %s; last saw: %s", d, what, saw)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freshEnviron is the test's environment without any CUSTODY_ variable
// (a machine custody never ran on), with a cache of the test's own, and
// extra.
func freshEnviron(t *testing.T, extra ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CUSTODY_") && !strings.HasPrefix(kv, "XDG_CACHE_HOME=") {
			out = append(out, kv)
		}
	}
	return append(append(out, "XDG_CACHE_HOME="+t.TempDir()), extra...)
}

// runWith runs custody with exactly the environment environ.
func runWith(t *testing.T, environ []string, args ...string) result {
	t.Helper()
	return runWithin(t, commandTimeout, environ, args...)
}

// runWithin is runWith for a run that must end within d: a daemon that
// should have refused to start.
func runWithin(t *testing.T, d time.Duration, environ []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, custodyBin, args...)
	cmd.Env = environ
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	r, err := collect(cmd, args)
	if err != nil {
		t.Fatalf("%v\n%s", err, r)
	}
	return r
}

func appendTo(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
