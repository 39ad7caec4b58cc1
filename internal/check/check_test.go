package check

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/custodyhq/custody/internal/backend"
	"github.com/custodyhq/custody/internal/backend/mem"
	"github.com/custodyhq/custody/internal/testkit"
	"github.com/custodyhq/custody/internal/vault"
	"github.com/custodyhq/custody/internal/vaulttest"
)

// setup makes a vault with one version of two files in separate packs
// (a 20 MiB file fills a pack of its own).
func setup(t *testing.T) (*vault.Vault, *mem.Mem, *vault.Version) {
	t.Helper()
	v, be := vaulttest.New(t)
	dir := t.TempDir()
	testkit.WriteFiles(t, dir, map[string][]byte{
		"big/weights.bin": testkit.RandomBytes(1, 20<<20),
		"small/notes.txt": []byte("hello"),
	})
	ver := vaulttest.Snapshot(t, v, "ds", dir)
	return v, be, ver
}

func replace(t *testing.T, be *mem.Mem, h backend.Handle, edit func([]byte) []byte) {
	t.Helper()
	ctx := context.Background()
	b, err := be.Get(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	be.Delete(ctx, h)
	if err := be.Put(ctx, h, edit(b)); err != nil {
		t.Fatal(err)
	}
}

func packs(t *testing.T, be *mem.Mem) []backend.Info {
	var out []backend.Info
	be.List(context.Background(), backend.Packs, func(i backend.Info) error { out = append(out, i); return nil })
	return out
}

func TestCheckFindsNoDamageInAHealthyVault(t *testing.T) {
	v, _, _ := setup(t)
	for _, readData := range []bool{false, true} {
		r, err := Run(context.Background(), v, Options{ReadData: readData})
		if err != nil {
			t.Fatal(err)
		}
		if !r.OK() || r.Versions != 1 || r.Packs < 2 {
			t.Fatalf("read-data=%v: %+v", readData, r)
		}
	}
}

func TestCheckReadDataNamesTheDamagedPathAndVersion(t *testing.T) {
	v, be, ver := setup(t)
	// The largest pack holds the weights; flip a byte in its first blob.
	var big backend.Info
	for _, p := range packs(t, be) {
		if p.Size > big.Size {
			big = p
		}
	}
	replace(t, be, big.Handle, func(b []byte) []byte { b[1000] ^= 0x40; return b })
	r, _ := Run(context.Background(), vaulttest.Reopen(t, be), Options{})
	if !r.OK() {
		t.Fatalf("without --read-data the header is intact, yet: %+v", r.Problems)
	}
	r, err := Run(context.Background(), v, Options{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.OK() || len(r.Affected) != 1 || r.Affected[0].Version != ver.ID.String() {
		t.Fatalf("report: %+v", r)
	}
	if got := strings.Join(r.Affected[0].Paths, "\n"); !strings.Contains(got, "/big/weights.bin") || strings.Contains(got, "notes.txt") {
		t.Fatalf("affected paths: %q", got)
	}
	if !strings.Contains(r.Problems[0].Object, big.Handle.Name) {
		t.Fatalf("problem names %q, want pack %s", r.Problems[0].Object, big.Handle.Name)
	}
}

func TestCheckReportsAMissingPackByPath(t *testing.T) {
	_, be, _ := setup(t)
	var big backend.Info
	for _, p := range packs(t, be) {
		if p.Size > big.Size {
			big = p
		}
	}
	be.Delete(context.Background(), big.Handle)
	r, err := Run(context.Background(), vaulttest.Reopen(t, be), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.OK() || !strings.Contains(r.Problems[0].Error, "missing") || !strings.Contains(strings.Join(r.Affected[0].Paths, " "), "weights.bin") {
		t.Fatalf("report: %+v", r)
	}
}

func TestCheckReportsATamperedVersion(t *testing.T) {
	_, be, ver := setup(t)
	replace(t, be, backend.Handle{Kind: backend.Versions, Name: ver.ID.String()}, func(b []byte) []byte {
		return bytes.Clone(append(b[:len(b)-1], b[len(b)-1]^1))
	})
	r, err := Run(context.Background(), vaulttest.Reopen(t, be), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.OK() || !strings.HasPrefix(r.Problems[0].Object, "versions/") {
		t.Fatalf("report: %+v", r)
	}
}

func TestCheckCountsUnindexedPacksWithoutCallingThemDamage(t *testing.T) {
	v, be, _ := setup(t)
	ctx := context.Background()
	before := map[vault.ID]bool{}
	ids, _ := v.IndexObjects(ctx)
	for _, id := range ids {
		before[id] = true
	}
	// A writer killed after storing a pack but before its index: simulate by
	// storing and indexing a blob, then removing that index object.
	data := testkit.RandomBytes(9, 1000)
	v.SaveBlob(ctx, vault.DataBlob, v.BlobID(data), data)
	if err := v.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	ids, _ = v.IndexObjects(ctx)
	for _, id := range ids {
		if !before[id] {
			be.Delete(ctx, backend.Handle{Kind: backend.Index, Name: id.String()})
		}
	}
	r, err := Run(ctx, vaulttest.Reopen(t, be), Options{ReadData: true})
	if err != nil || !r.OK() || len(r.UnindexedPacks) != 1 {
		t.Fatalf("%v %+v", err, r)
	}
}
