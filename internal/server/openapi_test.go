package server

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/server/auth"
)

// openapiUnrouted are the operations the document describes that the
// route table does not hold: the health checks New adds beside it.
var openapiUnrouted = map[string]bool{"GET /healthz": true, "GET /readyz": true}

// openapiMethods are the OpenAPI path-item keys that are operations.
var openapiMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// openapiOperation is the part of an operation the test checks.
type openapiOperation struct {
	OperationID string            `json:"operationId"`
	Description string            `json:"description"`
	Action      *string           `json:"x-custody-action"`
	Security    *[]map[string]any `json:"security"`
	Parameters  []map[string]any  `json:"parameters"`
}

// openapiRolesLine is the sentence an operation's description starts
// with for action a: the roles auth.Matrix allows it.
func openapiRolesLine(a auth.Action) string {
	var roles []string
	for _, r := range auth.Matrix() {
		if r.Action != a {
			continue
		}
		for _, role := range catalog.Roles {
			switch r.For(role) {
			case auth.Granted:
				roles = append(roles, role)
			case auth.OwnStages:
				roles = append(roles, role+" (own stages only)")
			}
		}
	}
	return fmt.Sprintf("Action: `%s`. Roles: %s.", a, strings.Join(roles, ", "))
}

// openapiPathParams are the {names} in a ServeMux or OpenAPI path.
var openapiPathParams = regexp.MustCompile(`\{([^}.]+)(\.\.\.)?\}`)

func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	var raw map[string]any
	if err := json.Unmarshal(openapiDoc, &raw); err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openapiDoc, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1.") {
		t.Errorf("openapi = %q, want 3.1.x", doc.OpenAPI)
	}

	// Every operation the document has, by "METHOD /path".
	ops := map[string]openapiOperation{}
	ids := map[string]string{}
	for path, item := range doc.Paths {
		for _, m := range openapiMethods {
			b, ok := item[m]
			if !ok {
				continue
			}
			key := strings.ToUpper(m) + " " + path
			var o openapiOperation
			if err := json.Unmarshal(b, &o); err != nil {
				t.Fatalf("%s: %v", key, err)
			}
			ops[key] = o
			switch {
			case o.OperationID == "":
				t.Errorf("%s has no operationId", key)
			case ids[o.OperationID] != "":
				t.Errorf("operationId %q is used by %s and %s", o.OperationID, ids[o.OperationID], key)
			default:
				ids[o.OperationID] = key
			}
			openapiCheckPathParams(t, raw, key, path, o)
		}
	}

	routes := (&Server{}).routes()
	routed := map[string]bool{}
	for _, rt := range routes {
		method, path, ok := strings.Cut(rt.pattern, " ")
		if !ok || method == "" {
			t.Errorf("route %q has no method", rt.pattern)
			continue
		}
		key := method + " " + openapiPathParams.ReplaceAllString(path, "{$1}")
		routed[key] = true
		o, ok := ops[key]
		if !ok {
			t.Errorf("route %q is not in openapi.json: document it", rt.pattern)
			continue
		}
		if rt.action == "" {
			if o.Action != nil {
				t.Errorf("%s: public route, but x-custody-action is %q", key, *o.Action)
			}
			if o.Security == nil || len(*o.Security) != 0 {
				t.Errorf("%s: public route, want security: []", key)
			}
			continue
		}
		if o.Action == nil || *o.Action != string(rt.action) {
			got := "absent"
			if o.Action != nil {
				got = fmt.Sprintf("%q", *o.Action)
			}
			t.Errorf("%s: x-custody-action is %s, want %q", key, got, rt.action)
		}
		if o.Security != nil {
			t.Errorf("%s needs a token, but overrides the global security", key)
		}
		if want := openapiRolesLine(rt.action); !strings.HasPrefix(o.Description, want) {
			t.Errorf("%s: description does not start with the matrix's roles:\n got: %.120q\nwant: %q", key, o.Description, want)
		}
	}
	for key, o := range ops {
		switch {
		case routed[key]:
		case openapiUnrouted[key]:
			if o.Action != nil || o.Security == nil || len(*o.Security) != 0 {
				t.Errorf("%s is public: want no x-custody-action and security: []", key)
			}
		default:
			t.Errorf("openapi.json documents %s, which is no route", key)
		}
	}

	openapiCheckRefs(t, raw, raw, "#")
}

// openapiCheckPathParams checks an operation declares exactly the path
// parameters its path names.
func openapiCheckPathParams(t *testing.T, doc map[string]any, key, path string, o openapiOperation) {
	t.Helper()
	var want, got []string
	for _, m := range openapiPathParams.FindAllStringSubmatch(path, -1) {
		want = append(want, m[1])
	}
	for _, p := range o.Parameters {
		if ref, ok := p["$ref"].(string); ok {
			r, ok := openapiResolve(doc, ref).(map[string]any)
			if !ok {
				continue // openapiCheckRefs reports it
			}
			p = r
		}
		if p["in"] == "path" {
			name, _ := p["name"].(string)
			got = append(got, name)
			if p["required"] != true {
				t.Errorf("%s: path parameter %q must be required", key, name)
			}
		}
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(want, got) {
		t.Errorf("%s: path parameters %q, want %q", key, got, want)
	}
}

// openapiCheckRefs checks every $ref under v points at something in doc.
func openapiCheckRefs(t *testing.T, doc map[string]any, v any, at string) {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if ref, ok := x.(string); ok && k == "$ref" {
				if openapiResolve(doc, ref) == nil {
					t.Errorf("%s: $ref %q resolves to nothing", at, ref)
				}
				continue
			}
			openapiCheckRefs(t, doc, x, at+"/"+strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1"))
		}
	case []any:
		for i, x := range v {
			openapiCheckRefs(t, doc, x, fmt.Sprintf("%s/%d", at, i))
		}
	}
}

// openapiResolve follows a local JSON pointer ("#/components/schemas/Job")
// in doc; nil when it leads nowhere.
func openapiResolve(doc map[string]any, ref string) any {
	rest, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil
	}
	var cur any = doc
	for _, tok := range strings.Split(rest, "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		if cur, ok = m[tok]; !ok {
			return nil
		}
	}
	return cur
}
