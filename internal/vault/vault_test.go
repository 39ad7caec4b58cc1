package vault

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/backend"
	"github.com/custodyhq/custody/internal/backend/mem"
	"github.com/custodyhq/custody/internal/testkit"
)

var testKDF = KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}

func newTestVault(t *testing.T) (*Vault, backend.Backend) {
	t.Helper()
	be := mem.New()
	ctx := context.Background()
	if err := Init(ctx, be, "secret", InitOptions{KDF: testKDF}); err != nil {
		t.Fatal(err)
	}
	v := openTestVault(t, be, "secret")
	return v, be
}

func openTestVault(t *testing.T, be backend.Backend, pass string) *Vault {
	t.Helper()
	v, err := Open(context.Background(), be, pass, Options{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

func TestOpenRefusesWrongPassphrase(t *testing.T) {
	_, be := newTestVault(t)
	_, err := Open(context.Background(), be, "not it", Options{CacheDir: t.TempDir()})
	if !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("got %v, want ErrWrongPassphrase", err)
	}
}

func TestOpenRefusesWhatIsNotAVault(t *testing.T) {
	ctx := context.Background()
	cases := map[string]func(be backend.Backend){
		"empty": func(backend.Backend) {},
		"foreign": func(be backend.Backend) {
			be.Put(ctx, backend.Handle{Kind: backend.Marker}, []byte(`{"format":"restic"}`))
		},
		"garbage": func(be backend.Backend) { be.Put(ctx, backend.Handle{Kind: backend.Marker}, []byte{0xff, 0}) },
	}
	for name, setup := range cases {
		t.Run(name, func(t *testing.T) {
			be := mem.New()
			setup(be)
			if _, err := Open(ctx, be, "x", Options{CacheDir: t.TempDir()}); !errors.Is(err, ErrNotVault) {
				t.Fatalf("got %v, want ErrNotVault", err)
			}
		})
	}
}

func TestOpenRefusesNewerFormat(t *testing.T) {
	ctx := context.Background()
	be := mem.New()
	be.Put(ctx, backend.Handle{Kind: backend.Marker}, []byte(`{"format":"custody-vault","version":2,"id":"`+strings.Repeat("a", 64)+`"}`))
	_, err := Open(ctx, be, "x", Options{CacheDir: t.TempDir()})
	if !errors.Is(err, ErrNewerFormat) || !strings.Contains(err.Error(), "upgrade custody") {
		t.Fatalf("got %v, want ErrNewerFormat telling to upgrade", err)
	}
}

func TestInitRefusesExistingVault(t *testing.T) {
	_, be := newTestVault(t)
	if err := Init(context.Background(), be, "other", InitOptions{KDF: testKDF}); err == nil || !strings.Contains(err.Error(), "already") {
		t.Fatalf("second init: got %v", err)
	}
}

func TestInitResumesAfterCrashBeforeMarker(t *testing.T) {
	ctx := context.Background()
	be := mem.New()
	// An interrupted init leaves config and a key but no marker.
	be.Put(ctx, backend.Handle{Kind: backend.Config}, []byte("half"))
	be.Put(ctx, backend.Handle{Kind: backend.Keys, Name: "stale"}, []byte("half"))
	if err := Init(ctx, be, "secret", InitOptions{KDF: testKDF}); err != nil {
		t.Fatal(err)
	}
	openTestVault(t, be, "secret")
}

func TestSaveLoadBlobRoundTripAndDedup(t *testing.T) {
	ctx := context.Background()
	v, be := newTestVault(t)
	text := bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog\n"), 20000)
	random := testkit.RandomBytes(1, 900_000)
	for _, data := range [][]byte{text, random, {}, []byte("x")} {
		id := v.BlobID(data)
		n, err := v.SaveBlob(ctx, DataBlob, id, data)
		if err != nil || n == 0 {
			t.Fatalf("save: %d %v", n, err)
		}
		if n, _ := v.SaveBlob(ctx, DataBlob, id, data); n != 0 {
			t.Fatalf("duplicate stored %d bytes", n)
		}
	}
	if err := v.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// compressible text is stored compressed; random data is not inflated
	var packBytes int64
	be.List(ctx, backend.Packs, func(i backend.Info) error { packBytes += i.Size; return nil })
	if max := int64(len(random) + len(text)/4); packBytes > max {
		t.Fatalf("packs hold %d bytes, want under %d", packBytes, max)
	}
	v2 := openTestVault(t, be, "secret")
	for _, data := range [][]byte{text, random, {}, []byte("x")} {
		id := v2.BlobID(data)
		if !v2.HasBlob(id) {
			t.Fatalf("reopened vault lacks blob %s", id.Short())
		}
		got, err := v2.LoadBlob(ctx, id)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("load after reopen: %v, equal=%v", err, bytes.Equal(got, data))
		}
	}
}

func TestLoadBlobDetectsTamperedPack(t *testing.T) {
	ctx := context.Background()
	v, be := newTestVault(t)
	data := testkit.RandomBytes(2, 100_000)
	id := v.BlobID(data)
	v.SaveBlob(ctx, DataBlob, id, data)
	v.Flush(ctx)
	var h backend.Handle
	be.List(ctx, backend.Packs, func(i backend.Info) error { h = i.Handle; return nil })
	b, _ := be.Get(ctx, h)
	b[100] ^= 1
	be.Delete(ctx, h)
	be.Put(ctx, h, b)
	if _, err := v.LoadBlob(ctx, id); !errors.Is(err, ErrAuth) {
		t.Fatalf("got %v, want ErrAuth", err)
	}
}

func TestIndexCacheMergesNewObjectsAndRebuildsAfterRemoval(t *testing.T) {
	ctx := context.Background()
	v, be := newTestVault(t)
	cache := t.TempDir()
	save := func(v *Vault, seed uint64) ID {
		d := testkit.RandomBytes(seed, 5000)
		id := v.BlobID(d)
		v.SaveBlob(ctx, DataBlob, id, d)
		if err := v.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		return id
	}
	a := save(v, 10)
	open := func() *Vault {
		v, err := Open(ctx, be, "secret", Options{CacheDir: cache})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { v.Close() })
		return v
	}
	v1 := open()
	b := save(v1, 11)
	v2 := open() // merges b's index object into the cache holding a
	if !v2.HasBlob(a) || !v2.HasBlob(b) {
		t.Fatal("merged cache misses a blob")
	}
	if len(v2.idx.objects) != 2 {
		t.Fatalf("cache covers %d index objects, want 2", len(v2.idx.objects))
	}
	// Removing an index object (as prune does) forces a rebuild without it.
	ids, _ := v2.IndexObjects(ctx)
	var packs []PackBlobs
	for _, id := range ids {
		p, _ := v2.ReadIndexObject(ctx, id)
		if p[0].Blobs[0].ID == a {
			packs = append(packs, p...)
		}
		be.Delete(ctx, backend.Handle{Kind: backend.Index, Name: id.String()})
	}
	v2.WriteIndex(ctx, packs)
	v3 := open()
	if !v3.HasBlob(a) || v3.HasBlob(b) {
		t.Fatalf("rebuilt cache: has a=%v (want true), b=%v (want false)", v3.HasBlob(a), v3.HasBlob(b))
	}
}

func TestMarkedPacksDoNotCountForDedup(t *testing.T) {
	ctx := context.Background()
	v, be := newTestVault(t)
	d := testkit.RandomBytes(3, 4000)
	id := v.BlobID(d)
	v.SaveBlob(ctx, DataBlob, id, d)
	v.Flush(ctx)
	pack := v.written[id].Pack
	if _, err := v.MarkForDeletion(ctx, []ID{pack}); err != nil {
		t.Fatal(err)
	}
	if v.HasBlob(id) {
		t.Fatal("a blob only in a marked pack counts for dedup")
	}
	if n, _ := v.SaveBlob(ctx, DataBlob, id, d); n == 0 {
		t.Fatal("the blob was not stored again")
	}
	v.Flush(ctx)
	// A new process sees the marked pack and the new copy: the copy counts.
	v2 := openTestVault(t, be, "secret")
	if !v2.HasBlob(id) {
		t.Fatal("the repacked copy does not count")
	}
	if got, err := v2.LoadBlob(ctx, id); err != nil || !bytes.Equal(got, d) {
		t.Fatalf("load: %v", err)
	}
}

func TestVersionsAreSignedAndResolveByPrefix(t *testing.T) {
	ctx := context.Background()
	v, _ := newTestVault(t)
	var ids []ID
	for i := range 3 {
		ver := &Version{Dataset: "raw", Tree: v.BlobID([]byte{byte(i)}), Time: time.Now().Add(time.Duration(i) * time.Second), Message: "m"}
		id, err := v.SaveVersion(ctx, ver)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	got, err := v.ResolveVersion(ctx, ids[1].String()[:8], "")
	if err != nil || got.ID != ids[1] || got.Dataset != "raw" {
		t.Fatalf("resolve: %v %+v", err, got)
	}
	latest, err := v.ResolveVersion(ctx, "latest", "raw")
	if err != nil || latest.ID != ids[2] {
		t.Fatalf("latest: %v", err)
	}
	for prefix, want := range map[string]error{"abc": ErrShortPrefix, "00000000000": ErrVersionNotFound} {
		if _, err := v.ResolveVersion(ctx, prefix, ""); !errors.Is(err, want) {
			t.Errorf("resolve %q: got %v, want %v", prefix, err, want)
		}
	}
	// a version signed by another key does not verify
	plain, _ := v.loadSealedObject(ctx, backend.Versions, ids[0])
	_, other, _ := ed25519.GenerateKey(nil)
	if _, err := decodeVersion(plain, other.Public().(ed25519.PublicKey)); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("got %v, want ErrBadSignature", err)
	}
}

func TestKeysAddListRemove(t *testing.T) {
	ctx := context.Background()
	v, be := newTestVault(t)
	name, err := v.AddKey(ctx, "second", testKDF)
	if err != nil {
		t.Fatal(err)
	}
	v2 := openTestVault(t, be, "second")
	if v2.keyName != name {
		t.Fatal("second passphrase opened with another key")
	}
	keys, _ := v2.Keys(ctx)
	if len(keys) != 2 {
		t.Fatalf("%d keys", len(keys))
	}
	if _, err := v2.RemoveKey(ctx, name[:10]); err == nil {
		t.Fatal("removed the key in use")
	}
	if _, err := v2.RemoveKey(ctx, v.keyName[:10]); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, be, "secret", Options{CacheDir: t.TempDir()}); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("removed passphrase still opens: %v", err)
	}
}

// TestTreeBlobsLargerThanChunksRoundTrip: the tree of a directory with
// hundreds of thousands of entries is far larger than any chunk, and must
// load again (it did not: decompression was capped at the chunk size).
func TestTreeBlobsLargerThanChunksRoundTrip(t *testing.T) {
	ctx := context.Background()
	v, be := newTestVault(t)
	var b []byte
	for i := 0; len(b) <= 3*v.cfg.Chunker.Max; i++ {
		b = fmt.Appendf(b, `{"name":"img-%09d.png","type":"file","mode":420,"size":%d,"mtime":%d},`, i, 1000+i%977, 1700000000+i)
	}
	id := v.BlobID(b)
	if _, err := v.SaveBlob(ctx, TreeBlob, id, b); err != nil {
		t.Fatal(err)
	}
	if err := v.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	v2 := openTestVault(t, be, "secret")
	got, err := v2.LoadBlob(ctx, id)
	if err != nil {
		t.Fatalf("load a %d-byte tree: %v", len(b), err)
	}
	if !bytes.Equal(got, b) {
		t.Fatal("the tree came back different")
	}
	// Data blobs keep the chunk bound.
	if _, err := v.SaveBlob(ctx, DataBlob, v.BlobID(b), b); err == nil {
		t.Error("a data blob larger than any chunk was saved")
	}
}
