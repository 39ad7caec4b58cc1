package main_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

func TestTokenOwnerIsStoredListedAndAudited(t *testing.T) {
	t.Parallel()
	e := newVault(t)
	e.ok("token", "create", "--role", "operator", "--name", "by-name", "--uid", "nobody")
	e.ok("token", "create", "--role", "operator", "--name", "by-uid", "--uid", "4242")
	e.ok("token", "create", "--role", "auditor", "--name", "service")
	if bad := e.run("token", "create", "--role", "operator", "--name", "x", "--uid", "no-such-user-here"); bad.code != 2 || !strings.Contains(bad.stderr, "neither a uid nor a known user") {
		t.Errorf("an unknown user: want exit 2 saying so\n%s", bad)
	}

	var ts []struct {
		Name string
		UID  *uint32
	}
	if err := json.Unmarshal([]byte(e.ok("--json", "token", "list").stdout), &ts); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, tok := range ts {
		got[tok.Name] = "none"
		if tok.UID != nil {
			got[tok.Name] = strconv.FormatUint(uint64(*tok.UID), 10)
		}
	}
	want := map[string]string{"by-name": "65534", "by-uid": "4242", "service": "none"}
	for n, w := range want {
		if got[n] != w {
			t.Errorf("token %s uid %s, want %s (all: %v)", n, got[n], w, got)
		}
	}
	list := e.ok("token", "list")
	if !strings.Contains(list.stdout, "UID") || !strings.Contains(list.stdout, "65534") || !strings.Contains(list.stdout, "4242") {
		t.Errorf("token list does not show the uids:\n%s", list)
	}
	audit := e.ok("--json", "audit", "log", "--kind", "token.create")
	if !strings.Contains(audit.stdout, `"uid": "4242"`) {
		t.Errorf("the token.create entry does not name the uid:\n%s", audit)
	}
}
