package main_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTokensAreShownOnceKeptHashedAndRevocable(t *testing.T) {
	t.Parallel()
	e := newVault(t)
	r := e.ok("token", "create", "--role", "data-scientist", "--name", "nb-alice", "--stage", "explore", "--expires", "30d")
	secret := strings.TrimSpace(r.stdout)
	if !strings.HasPrefix(secret, "cst_") || len(secret) < 40 {
		t.Fatalf("want the secret on stdout, got %q", r.stdout)
	}
	if strings.Contains(r.stderr, secret) {
		t.Error("the secret is on stderr too")
	}
	if dup := e.run("token", "create", "--role", "auditor", "--name", "nb-alice"); dup.code != 1 || !strings.Contains(dup.stderr, "already") {
		t.Errorf("a second active token of the same name: want exit 1 naming it\n%s", dup)
	}
	if bad := e.run("token", "create", "--role", "root", "--name", "x"); bad.code == 0 {
		t.Errorf("an unknown role was accepted\n%s", bad)
	}
	list := e.ok("token", "list")
	if !strings.Contains(list.stdout, "nb-alice") || !strings.Contains(list.stdout, "data-scientist") || strings.Contains(list.stdout, secret) {
		t.Errorf("token list:\n%s", list)
	}
	// Only the hash is kept: the secret is in no catalog file.
	files, _ := filepath.Glob(filepath.Join(e.vault, "catalog.db*"))
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && bytes.Contains(b, []byte(secret)) {
			t.Errorf("%s holds the secret", f)
		}
	}
	audit := e.ok("--json", "audit", "log", "--kind", "token.create")
	if !strings.Contains(audit.stdout, "nb-alice") || strings.Contains(audit.stdout, secret) {
		t.Errorf("the ledger entry should name the token, never its secret:\n%s", audit)
	}
	e.ok("token", "revoke", "nb-alice")
	if list := e.ok("token", "list"); strings.Contains(list.stdout, "nb-alice") {
		t.Errorf("a revoked token is still listed as active:\n%s", list)
	}
	if all := e.ok("token", "list", "--all"); !strings.Contains(all.stdout, "revoked") {
		t.Errorf("token list --all does not show the revoked token:\n%s", all)
	}
	if again := e.run("token", "revoke", "nb-alice"); again.code != 1 {
		t.Errorf("revoking a name with no active token: want exit 1\n%s", again)
	}
}
