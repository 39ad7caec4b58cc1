package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custodyhq/custody/internal/testkit"
	"github.com/custodyhq/custody/internal/vault"
)

// run is one in-process run with env as its whole environment.
func run(t *testing.T, env map[string]string, kdf vault.KDFParams, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Run(context.Background(), args, Env{
		Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut,
		Getenv:     func(k string) string { return env[k] },
		NoTerminal: true,
		KDF:        kdf,
	})
	return code, out.String(), errOut.String()
}

func TestRunReadsItsOwnEnvironmentAndStoresItsKeyCost(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{
		"CUSTODY_VAULT":    filepath.Join(dir, "vault"),
		"CUSTODY_CACHE":    filepath.Join(dir, "cache"),
		"CUSTODY_PASSWORD": "from the run's environment",
	}
	cheap := vault.KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}
	if code, _, stderr := run(t, env, cheap, "init"); code != ExitOK {
		t.Fatalf("init: exit %d: %s", code, stderr)
	}
	data := filepath.Join(dir, "data")
	testkit.WriteFile(t, filepath.Join(data, "a.txt"), []byte("a"))
	for range 2 { // the second opens the index the first wrote, and caches it
		if code, _, stderr := run(t, env, cheap, "snapshot", data); code != ExitOK {
			t.Fatalf("snapshot: exit %d: %s", code, stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "cache")); err != nil {
		t.Errorf("the run's CUSTODY_CACHE was not used: %v", err)
	}
	keys, err := filepath.Glob(filepath.Join(dir, "vault", "keys", "*"))
	if err != nil || len(keys) != 1 {
		t.Fatalf("want one key file, got %v (%v)", keys, err)
	}
	b, err := os.ReadFile(keys[0])
	if err != nil {
		t.Fatal(err)
	}
	var kf struct {
		Params vault.KDFParams `json:"params"`
	}
	if err := json.Unmarshal(b, &kf); err != nil {
		t.Fatalf("key file: %v", err)
	}
	if kf.Params != cheap {
		t.Errorf("key file cost %+v, want the run's %+v", kf.Params, cheap)
	}

	// --password-file wins over CUSTODY_PASSWORD: a flag over the environment.
	passFile := filepath.Join(dir, "pass")
	testkit.WriteFile(t, passFile, []byte(env["CUSTODY_PASSWORD"]+"\n"))
	wrong := maps.Clone(env)
	wrong["CUSTODY_PASSWORD"] = "not the passphrase"
	if code, _, stderr := run(t, wrong, cheap, "log", "--password-file", passFile); code != ExitOK {
		t.Errorf("log --password-file with a wrong CUSTODY_PASSWORD: exit %d: %s", code, stderr)
	}
	if code, _, _ := run(t, wrong, cheap, "log"); code == ExitOK {
		t.Errorf("log with a wrong CUSTODY_PASSWORD succeeded")
	}

	// Another run without the passphrase and without a terminal refuses,
	// whatever the test process's own environment holds.
	t.Setenv("CUSTODY_PASSWORD", "the process's, not the run's")
	delete(env, "CUSTODY_PASSWORD")
	code, _, stderr := run(t, env, cheap, "log")
	if code != ExitUsage || !strings.Contains(stderr, "no passphrase") {
		t.Errorf("log without a passphrase: exit %d, %q; want exit %d, no passphrase", code, stderr, ExitUsage)
	}
}
