package main_test

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/custodyhq/custody/internal/testkit"
)

// TestCheckFindsTamperedObjects damages one object at a time in a vault
// with two datasets, and puts it back afterwards.
func TestCheckFindsTamperedObjects(t *testing.T) {
	t.Parallel()
	e := newVault(t)
	rng := newRand(t)
	base := t.TempDir()
	evidence := filepath.Join(base, "evidence")
	testkit.WriteFile(t, filepath.Join(evidence, "big.bin"), testkit.RandomBytes(rng.Uint64(), 3<<20))
	testkit.WriteFile(t, filepath.Join(evidence, "notes/small.txt"), textBytes(rng, 5000))
	v := e.snapshot(evidence).Version
	dataPack := packs(t, e.vault)[0] // the largest: big.bin's contents
	packID := filepath.Base(dataPack)
	other := filepath.Join(base, "other")
	testkit.WriteFile(t, filepath.Join(other, "unrelated.bin"), testkit.RandomBytes(rng.Uint64(), 200_000))
	ov := e.snapshot(other).Version
	e.checkClean("--read-data")

	// keep saves a vault file and returns a func that puts it back as it was.
	keep := func(t *testing.T, path string) func() {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return func() {
			os.Remove(path)
			if err := os.WriteFile(path, b, 0o400); err != nil {
				t.Fatal(err)
			}
		}
	}
	mentions := func(t *testing.T, r result, what ...string) {
		t.Helper()
		for _, w := range what {
			if !strings.Contains(r.stdout+r.stderr, w) {
				t.Errorf("output does not name %q:\n%s", w, r)
			}
		}
	}

	t.Run("FlippedByteInDataPack", func(t *testing.T) {
		e := e.in(t)
		defer keep(t, dataPack)()
		fi, err := os.Stat(dataPack)
		if err != nil {
			t.Fatal(err)
		}
		flipByte(t, dataPack, fi.Size()/2)

		r := e.run("check")
		switch r.code {
		case 0:
			t.Log("check without --read-data reads pack headers only and does not see the damage")
		case 1:
			mentions(t, r, packID[:12])
		default:
			t.Errorf("check: want exit 0 or 1, got\n%s", r)
		}

		r = e.run("check", "--read-data")
		if r.code != 1 {
			t.Fatalf("check --read-data of a flipped byte: want exit 1, got\n%s", r)
		}
		mentions(t, r, "data/"+packID, "version "+v[:12], "big.bin")
		if strings.Contains(r.stdout, "version "+ov[:12]) {
			t.Errorf("check names the version of the other dataset as affected:\n%s", r)
		}
		if strings.Contains(r.stdout, "small.txt") && !strings.Contains(r.stdout, "big.bin") {
			t.Errorf("check names the wrong file:\n%s", r)
		}

		r = e.run("restore", v, "--target", filepath.Join(t.TempDir(), "out"))
		if r.code == 0 {
			t.Errorf("restore of a damaged version: want failure, got\n%s", r)
		} else {
			mentions(t, r, "big.bin")
		}
		compareTrees(t, other, e.restore(ov))
	})

	t.Run("MissingPack", func(t *testing.T) {
		e := e.in(t)
		defer keep(t, dataPack)()
		if err := os.Remove(dataPack); err != nil {
			t.Fatal(err)
		}
		r := e.run("check")
		if r.code != 1 {
			t.Fatalf("check with a pack missing: want exit 1, got\n%s", r)
		}
		mentions(t, r, packID, "missing", "version "+v[:12], "big.bin")
		if strings.Contains(r.stdout, "version "+ov[:12]) {
			t.Errorf("check names the version of the other dataset as affected:\n%s", r)
		}
	})

	t.Run("CorruptVersion", func(t *testing.T) {
		e := e.in(t)
		path := filepath.Join(e.vault, "versions", v)
		defer keep(t, path)()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		flipByte(t, path, fi.Size()/2)
		r := e.run("check")
		if r.code != 1 {
			t.Fatalf("check with a corrupt version: want exit 1, got\n%s", r)
		}
		mentions(t, r, "versions/"+v)
		if strings.Contains(r.stdout, "versions/"+ov) {
			t.Errorf("check names the intact version as damaged:\n%s", r)
		}
		// The other dataset's history is intact: it can still be restored
		// and snapshotted.
		compareTrees(t, other, e.restore(ov))
		if r := e.run("snapshot", other); r.code != 0 {
			t.Errorf("one damaged version object blocks new snapshots of every dataset: want exit 0, got\n%s", r)
		}
	})

	t.Run("CorruptKeyParams", func(t *testing.T) {
		e := e.in(t)
		second := []string{"CUSTODY_PASSWORD=second passphrase"}
		e.runEnvOK([]string{"CUSTODY_NEW_PASSWORD=second passphrase"}, "key", "add")
		name := currentKey(t, e, nil)
		path := filepath.Join(e.vault, "keys", name)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		// Change Argon2id's time cost by one, staying within the bounds
		// readers accept.
		m := regexp.MustCompile(`"time": ?(\d+)`).FindSubmatchIndex(b)
		if m == nil {
			t.Fatalf("key file %s has no \"time\" parameter:\n%s", name, b)
		}
		cost, _ := strconv.Atoi(string(b[m[2]:m[3]]))
		newCost := cost + 1
		if cost >= 16 {
			newCost = cost - 1
		}
		edited := slices.Concat(b[:m[2]], []byte(strconv.Itoa(newCost)), b[m[3]:])

		// In place: the file no longer matches its name.
		os.Chmod(path, 0o600)
		if err := os.WriteFile(path, edited, 0o400); err != nil {
			t.Fatal(err)
		}
		e.fails(1, []string{"wrong passphrase"}, "log")
		r := e.runEnv(second, "check")
		if r.code != 1 {
			t.Errorf("check with a key file that does not match its name: want exit 1, got\n%s", r)
		}
		mentions(t, r, name[:12])

		// Renamed to its new hash: the name fits, the wrap does not.
		sum := sha256.Sum256(edited)
		renamed := filepath.Join(e.vault, "keys", hex.EncodeToString(sum[:]))
		if err := os.Rename(path, renamed); err != nil {
			t.Fatal(err)
		}
		e.fails(1, []string{"wrong passphrase"}, "log")
		e.runEnvOK(second, "log")
	})
}

// runEnvOK runs custody with extra environment and wants exit 0.
func (e *env) runEnvOK(extra []string, args ...string) result {
	e.t.Helper()
	r := e.runEnv(extra, args...)
	if r.code != 0 {
		e.t.Fatalf("want exit 0, got\n%s", r)
	}
	return r
}

type keyJSON struct {
	Name    string `json:"name"`
	Current bool   `json:"current"`
}

// keyList returns key list --json run with extra environment.
func keyList(t *testing.T, e *env, extra []string) []keyJSON {
	t.Helper()
	var keys []keyJSON
	r := e.runEnvOK(extra, "--json", "key", "list")
	if err := decodeJSON(r.stdout, &keys); err != nil {
		t.Fatalf("key list --json: %v\n%s", err, r)
	}
	return keys
}

// currentKey is the name of the key the passphrase in extra (or the env's) opens.
func currentKey(t *testing.T, e *env, extra []string) string {
	t.Helper()
	for _, k := range keyList(t, e, extra) {
		if k.Current {
			return k.Name
		}
	}
	t.Fatal("key list marks no key as current")
	return ""
}
