package guard

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/testkit"
	"github.com/custodyhq/custody/internal/vault"
	"github.com/custodyhq/custody/internal/vaulttest"
)

// attackFile is one file of the recovery tests' dataset: what it holds
// when the recovery point is taken, after the attack, after Restore, and
// in quarantine. "" is no file.
type attackFile struct {
	path        string
	orig        string
	attacked    string
	touched     string // the incident's event kinds on it; "" = not touched
	oldPath     string // renamed from
	want        string
	quarantined string
}

var attack = []attackFile{
	{path: "a.txt", orig: "alpha", attacked: "ENCRYPTED alpha", touched: "modify", want: "alpha", quarantined: "ENCRYPTED alpha"},
	{path: "docs/c.txt", orig: "charlie", attacked: "ENCRYPTED charlie", touched: "modify", want: "charlie", quarantined: "ENCRYPTED charlie"},
	{path: "d.txt", orig: "delta", touched: "delete", want: "delta"},
	// Renamed and encrypted: e.txt comes back, e.txt.locked goes.
	{path: "e.txt", orig: "echo", want: "echo"},
	{path: "e.txt.locked", attacked: "ENCRYPTED echo", touched: "rename", oldPath: "e.txt", quarantined: "ENCRYPTED echo"},
	{path: "docs/README_DECRYPT.txt", attacked: "pay us", touched: "create", quarantined: "pay us"},
	{path: "keep.txt", orig: "kilo", attacked: "kilo", want: "kilo"},
	// Changed after the recovery point by someone else: not the
	// incident's, so left alone.
	{path: "later.txt", orig: "lima", attacked: "lima, edited by its owner", want: "lima, edited by its owner"},
}

// recovery is a dataset with a recovery point, attacked as attack says.
type recovery struct {
	v    *vault.Vault
	dir  string // holds the dataset and the quarantine
	root string // the dataset
	inc  catalog.Incident
	fs   []catalog.IncidentFile
}

func newRecovery(t *testing.T, files []attackFile) *recovery {
	t.Helper()
	v, _ := vaulttest.New(t)
	rc := &recovery{v: v, dir: t.TempDir()}
	rc.root = filepath.Join(rc.dir, "data")
	for _, f := range files {
		if f.orig != "" {
			testkit.WriteFiles(t, rc.root, map[string][]byte{f.path: []byte(f.orig)})
		}
	}
	ver := vaulttest.Snapshot(t, v, "data", rc.root)
	for _, f := range files {
		p := filepath.Join(rc.root, f.path)
		switch {
		case f.attacked == f.orig:
		case f.attacked == "":
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		default:
			testkit.WriteFiles(t, rc.root, map[string][]byte{f.path: []byte(f.attacked)})
		}
		if f.touched != "" {
			inc := catalog.IncidentFile{Path: p, Dataset: "data", First: t0, Kinds: f.touched}
			if f.oldPath != "" {
				inc.OldPath = filepath.Join(rc.root, f.oldPath)
			}
			rc.fs = append(rc.fs, inc)
		}
	}
	rc.inc = catalog.Incident{ID: 7, State: catalog.IncidentContained, Severity: catalog.SeverityCritical,
		Datasets: []string{"data"}, Recovery: map[string]string{"data": ver.ID.String()}}
	return rc
}

// quarantine is where Restore puts rel.
func (rc *recovery) quarantine(rel string) string {
	return filepath.Join(rc.dir, ".custody-quarantine", "incident-7", "data", rel)
}

// content is p's content, or "" when there is no file.
func content(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (rc *recovery) checkTree(t *testing.T, files []attackFile) {
	t.Helper()
	for _, f := range files {
		if got := content(t, filepath.Join(rc.root, f.path)); got != f.want {
			t.Errorf("%s holds %q, want %q", f.path, got, f.want)
		}
	}
}

func TestRestoreRecoversExactlyTheTouchedFiles(t *testing.T) {
	rc := newRecovery(t, attack)
	later := filepath.Join(rc.root, "later.txt")
	before, err := os.Stat(later)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Restore(t.Context(), rc.v, rc.inc, rc.fs)
	if err != nil {
		t.Fatal(err)
	}
	rc.checkTree(t, attack)
	var wantRestored, wantQuarantined []string
	for _, f := range attack {
		if got := content(t, rc.quarantine(f.path)); got != f.quarantined {
			t.Errorf("quarantine of %s holds %q, want %q", f.path, got, f.quarantined)
		}
		if f.quarantined != "" {
			wantQuarantined = append(wantQuarantined, filepath.Join(rc.root, f.path))
		}
		if f.want != "" && f.want == f.orig && f.want != f.attacked {
			wantRestored = append(wantRestored, filepath.Join(rc.root, f.path))
		}
	}
	slices.Sort(wantRestored)
	slices.Sort(wantQuarantined)
	if got := slices.Sorted(slices.Values(res.Restored)); !slices.Equal(got, wantRestored) {
		t.Errorf("restored %v, want %v", got, wantRestored)
	}
	if got := slices.Sorted(slices.Values(res.Quarantined)); !slices.Equal(got, wantQuarantined) {
		t.Errorf("quarantined %v, want %v", got, wantQuarantined)
	}
	if want := filepath.Join(rc.dir, ".custody-quarantine", "incident-7"); res.Quarantine != want {
		t.Errorf("quarantine %s, want %s", res.Quarantine, want)
	}
	if len(res.Missing) != 0 {
		t.Errorf("missing %v, want none", res.Missing)
	}
	if after, err := os.Stat(later); err != nil || !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("an untouched file was rewritten: %v, %v -> %v", err, before.ModTime(), after.ModTime())
	}
	// Only the quarantine is left beside the dataset: no staging.
	entries, err := os.ReadDir(filepath.Join(rc.dir, ".custody-quarantine"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "incident-7" {
		t.Errorf("beside the dataset's quarantine: %v", entries)
	}
}

func TestRestoreIsIdempotent(t *testing.T) {
	rc := newRecovery(t, attack)
	for i := range 2 {
		if _, err := Restore(t.Context(), rc.v, rc.inc, rc.fs); err != nil {
			t.Fatalf("run %d: %v", i+1, err)
		}
		rc.checkTree(t, attack)
	}
	// The planted files stay in quarantine, not back in the dataset.
	for _, f := range attack {
		if f.orig == "" && f.quarantined != "" && content(t, rc.quarantine(f.path)) == "" {
			t.Errorf("%s lost from quarantine on the second run", f.path)
		}
	}
}

// Restore says it is safe to run again and that "nothing already
// quarantined is lost": a second run must not replace the damaged copies
// in quarantine with the good ones it restored the first time.
func TestRestoreTwiceKeepsQuarantinedEvidence(t *testing.T) {
	rc := newRecovery(t, attack)
	for i := range 2 {
		if _, err := Restore(t.Context(), rc.v, rc.inc, rc.fs); err != nil {
			t.Fatalf("run %d: %v", i+1, err)
		}
	}
	for _, f := range attack {
		if f.quarantined == "" {
			continue
		}
		found := false
		matches, _ := filepath.Glob(rc.quarantine(f.path) + "*")
		for _, m := range matches {
			if content(t, m) == f.quarantined {
				found = true
			}
		}
		if !found {
			t.Errorf("the damaged copy of %s (%q) is no longer in quarantine: %s holds %q",
				f.path, f.quarantined, rc.quarantine(f.path), content(t, rc.quarantine(f.path)))
		}
	}
}

func TestRestoreRefusesWithoutRecoveryPoint(t *testing.T) {
	tests := []struct {
		name     string
		recovery map[string]string
		want     string
	}{
		{"none", nil, "dataset data has no recovery point"},
		{"empty", map[string]string{"data": ""}, "dataset data has no recovery point"},
		{"another dataset's only", map[string]string{"other": "abc"}, "dataset data has no recovery point"},
		{"not in the vault", map[string]string{"data": strings.Repeat("0", 64)}, "recover: recovery point"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newRecovery(t, attack)
			rc.inc.Recovery = tt.recovery
			res, err := Restore(t.Context(), rc.v, rc.inc, rc.fs)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Restore: %v, want an error saying %q", err, tt.want)
			}
			if tt.recovery == nil && !strings.Contains(err.Error(), "custody restore") {
				t.Errorf("error %q does not say what to do instead", err)
			}
			if res != nil && (len(res.Restored) != 0 || len(res.Quarantined) != 0) {
				t.Errorf("result %+v, want nothing done", res)
			}
			// Nothing moved: the dataset is as the attack left it.
			for _, f := range attack {
				if got := content(t, filepath.Join(rc.root, f.path)); got != f.attacked {
					t.Errorf("%s holds %q, want it untouched (%q)", f.path, got, f.attacked)
				}
			}
			if _, err := os.Stat(filepath.Join(rc.dir, ".custody-quarantine")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a quarantine was made: %v", err)
			}
		})
	}
}

// Restore takes each dataset's path from its recovery point; a version
// taken from a relative path cannot say where that was.
func TestRestoreRefusesRelativeSource(t *testing.T) {
	v, _ := vaulttest.New(t)
	dir := t.TempDir()
	testkit.WriteFiles(t, dir, map[string][]byte{"data/a.txt": []byte("alpha")})
	t.Chdir(dir)
	ver := vaulttest.Snapshot(t, v, "data", "data")
	inc := catalog.Incident{ID: 1, Recovery: map[string]string{"data": ver.ID.String()}}
	files := []catalog.IncidentFile{{Path: filepath.Join(dir, "data", "a.txt"), Dataset: "data", First: t0, Kinds: "modify"}}
	_, err := Restore(t.Context(), v, inc, files)
	if err == nil || !strings.Contains(err.Error(), "does not say where it was taken from") {
		t.Fatalf("Restore: %v, want a refusal naming the missing source", err)
	}
}

// An incident that spans two datasets, one without a recovery point, is
// refused before either is changed: a half-done recovery is harder to
// reason about than none.
func TestRestoreRefusesBeforeChangingAnyDataset(t *testing.T) {
	rc := newRecovery(t, attack)
	rc.fs = append(rc.fs, catalog.IncidentFile{Path: filepath.Join(rc.dir, "zz", "x"), Dataset: "zz", First: t0, Kinds: "modify"})
	rc.inc.Datasets = append(rc.inc.Datasets, "zz")
	_, err := Restore(t.Context(), rc.v, rc.inc, rc.fs)
	if err == nil || !strings.Contains(err.Error(), "dataset zz has no recovery point") {
		t.Fatalf("Restore: %v, want a refusal for zz", err)
	}
	for _, f := range attack {
		if got := content(t, filepath.Join(rc.root, f.path)); got != f.attacked {
			t.Errorf("%s holds %q, want it untouched (%q)", f.path, got, f.attacked)
		}
	}
}

// A file the incident named, not in the recovery point and gone, is
// reported missing; files planted and quarantined are not.
func TestRestoreReportsMissingFiles(t *testing.T) {
	rc := newRecovery(t, attack)
	gone := filepath.Join(rc.root, "created-then-deleted.txt")
	rc.fs = append(rc.fs, catalog.IncidentFile{Path: gone, Dataset: "data", First: t0, Kinds: "create,delete"})
	res, err := Restore(t.Context(), rc.v, rc.inc, rc.fs)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Missing, []string{gone}) {
		t.Errorf("missing %v, want [%s]", res.Missing, gone)
	}
}

// A directory of the dataset replaced by a symbolic link is quarantined
// as the link, and what it pointed at is left alone.
func TestRestoreDoesNotWriteThroughSymlinkedDirectory(t *testing.T) {
	tests := []struct {
		name      string
		linkNamed bool // the incident names the link itself
	}{
		{"link named by the incident", true},
		{"link not named by the incident", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newRecovery(t, []attackFile{{path: "sub/x.txt", orig: "xray", attacked: "xray", want: "xray"}})
			outside := filepath.Join(rc.dir, "outside")
			testkit.WriteFiles(t, outside, map[string][]byte{"x.txt": []byte("not the dataset's")})
			sub := filepath.Join(rc.root, "sub")
			if err := os.RemoveAll(sub); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, sub); err != nil {
				t.Fatal(err)
			}
			rc.fs = []catalog.IncidentFile{{Path: filepath.Join(sub, "x.txt"), Dataset: "data", First: t0, Kinds: "modify"}}
			if tt.linkNamed {
				rc.fs = append(rc.fs, catalog.IncidentFile{Path: sub, Dataset: "data", First: t0.Add(-time.Second), Kinds: "create,delete"})
			}
			_, err := Restore(t.Context(), rc.v, rc.inc, rc.fs)
			if got := content(t, filepath.Join(outside, "x.txt")); got != "not the dataset's" {
				t.Errorf("Restore (%v) wrote through the link: the file outside holds %q", err, got)
			}
			if err != nil {
				return // a refusal is fine too
			}
			if fi, err := os.Lstat(sub); err != nil || !fi.IsDir() {
				t.Errorf("sub is not a directory again: %v %v", fi, err)
			}
			if got := content(t, filepath.Join(sub, "x.txt")); got != "xray" {
				t.Errorf("sub/x.txt holds %q, want xray", got)
			}
		})
	}
}
