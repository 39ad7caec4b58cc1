package auth

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/catalog"
)

// allActions is every route action, written out here so that the test
// does not take the list from the code it checks.
var allActions = []Action{
	"datasets.read", "versions.read", "versions.diff", "files.list", "snapshot.create", "restore.create",
	"audit.read", "proofs.read", "reports.read", "incidents.read", "incidents.transition",
	"lockouts.read", "lockouts.release", "offsite.read", "offsite.push", "tokens.manage", "metrics.read",
}

// TestRolesMatrix checks every role × action pair, allowed and denied, as
// documented, on a stage the token names, on one it does not, and with
// no stage.
func TestRolesMatrix(t *testing.T) {
	everything := allActions
	staged := []Action{"datasets.read", "versions.read", "versions.diff", "files.list", "snapshot.create"}
	want := map[string]struct {
		granted, own []Action // allowed on any stage / only on its own stages; the rest denied
	}{
		"admin": {granted: everything},
		"operator": {granted: []Action{
			"datasets.read", "versions.read", "versions.diff", "files.list", "snapshot.create", "restore.create",
			"audit.read", "incidents.read", "incidents.transition", "lockouts.read", "lockouts.release",
			"offsite.read", "offsite.push", "metrics.read",
		}},
		"data-scientist": {own: staged},
		"auditor":        {granted: []Action{"audit.read", "proofs.read", "reports.read", "incidents.read"}},
		"root":           {}, // unknown roles get nothing
		"":               {},
	}
	type check struct {
		stage string
		want  bool
	}
	for role, w := range want {
		tok := catalog.Token{ID: "tok_0011223344556677", Name: "t", Role: role}
		if role == "data-scientist" {
			tok.Stages = []string{"clean", "train"}
		}
		for _, a := range allActions {
			var checks []check
			switch {
			case slices.Contains(w.granted, a):
				checks = []check{{"train", true}, {"deploy", true}, {"", true}}
			case slices.Contains(w.own, a):
				checks = []check{{"train", true}, {"clean", true}, {"deploy", false}, {"", false}, {"Train", false}}
			default:
				checks = []check{{"train", false}, {"deploy", false}, {"", false}}
			}
			for _, c := range checks {
				if got := Allowed(tok, a, c.stage); got != c.want {
					t.Errorf("Allowed(%s, %s, stage %q) = %v, want %v", role, a, c.stage, got, c.want)
				}
			}
			wantScope := Denied
			if slices.Contains(w.granted, a) {
				wantScope = Granted
			} else if slices.Contains(w.own, a) {
				wantScope = OwnStages
			}
			if got := ScopeOf(role, a); got != wantScope {
				t.Errorf("ScopeOf(%s, %s) = %v, want %v", role, a, got, wantScope)
			}
		}
		if Allowed(tok, "datasets.write", "train") {
			t.Errorf("%s allowed an unknown action", role)
		}
	}
}

func TestMatrixHasEveryActionOnce(t *testing.T) {
	var got []Action
	for _, r := range Matrix() {
		got = append(got, r.Action)
	}
	if !slices.Equal(got, allActions) {
		t.Fatalf("matrix actions\n%v\nwant\n%v", got, allActions)
	}
	m := Matrix()
	m[0].Admin = Denied
	if ScopeOf(catalog.RoleAdmin, m[0].Action) != Granted {
		t.Fatal("changing Matrix's result changed the policy")
	}
}

func TestDataScientistWithoutStagesMayDoNothing(t *testing.T) {
	tok := catalog.Token{Role: catalog.RoleDataScientist}
	for _, a := range allActions {
		for _, stage := range []string{"", "train"} {
			if Allowed(tok, a, stage) {
				t.Errorf("stageless data-scientist allowed %s on %q", a, stage)
			}
		}
	}
}

func TestRevokedOrSuspendedTokenIsAllowedNothing(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tok := range []catalog.Token{
		{Role: catalog.RoleAdmin, Revoked: at},
		{Role: catalog.RoleAdmin, Suspended: at},
	} {
		for _, a := range allActions {
			if Allowed(tok, a, "train") {
				t.Errorf("%+v allowed %s", tok, a)
			}
		}
	}
}

// TestMatrixDocMatchesTable checks that the Markdown table in Matrix's
// doc comment is the table in the code.
func TestMatrixDocMatchesTable(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "roles.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	var doc string
	for _, d := range f.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Name.Name == "Matrix" && fd.Doc != nil {
			doc = fd.Doc.Text()
		}
	}
	var rows []string
	for l := range strings.SplitSeq(doc, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "|") && !strings.HasPrefix(l, "|--") {
			rows = append(rows, strings.Join(strings.Fields(l), " "))
		}
	}
	want := []string{"| action | admin | operator | data-scientist | auditor |"}
	for _, r := range Matrix() {
		want = append(want, fmt.Sprintf("| %s | %s | %s | %s | %s |", r.Action, r.Admin, r.Operator, r.DataScientist, r.Auditor))
	}
	if !slices.Equal(rows, want) {
		t.Fatalf("the doc comment's table:\n%s\nthe code's:\n%s", strings.Join(rows, "\n"), strings.Join(want, "\n"))
	}
}
