package ledger

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const origin = "custody.test/ledger"

func testKeys(t testing.TB, seed byte) *Keys {
	t.Helper()
	s := make([]byte, 32)
	s[0] = seed
	k, err := NewKeys(origin, s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func leaves(t testing.TB, from, n int) [][]byte {
	t.Helper()
	var out [][]byte
	for i := from; i < from+n; i++ {
		uid := uint32(1000)
		e := Entry{Time: time.Unix(1700000000, int64(i)), Kind: "snapshot", Actor: Actor{UID: &uid, User: "ana"}, Dataset: "raw", Path: "f" + strconv.Itoa(i), Outcome: "ok"}
		b, err := e.Leaf()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func buildLog(t testing.TB, n int) (*Log, *MemStore, [][]byte) {
	t.Helper()
	st := &MemStore{}
	l := New(st)
	recs := leaves(t, 0, n)
	for i := 0; i < n; i += 37 { // uneven batches
		if _, err := l.Append(context.Background(), recs[i:min(i+37, n)]); err != nil {
			t.Fatal(err)
		}
	}
	return l, st, recs
}

func records(recs [][]byte) Records {
	return func(yield func(int64, []byte) bool) error {
		for i, r := range recs {
			if !yield(int64(i), r) {
				break
			}
		}
		return nil
	}
}

// The auditor's side, written only with golang.org/x/mod/sumdb/{tlog,note}:
// nothing from this package takes part in checking.
func independentlyVerify(t *testing.T, vkey string, signed []byte, leaf []byte, index int64, proof tlog.RecordProof) tlog.Tree {
	t.Helper()
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		t.Fatalf("note.Open: %v", err)
	}
	lines := strings.SplitN(n.Text, "\n", 4)
	if lines[0] != origin {
		t.Fatalf("origin %q", lines[0])
	}
	size, _ := strconv.ParseInt(lines[1], 10, 64)
	tree := tlog.Tree{N: size}
	h, err := tlog.ParseHash(lines[2])
	if err != nil {
		t.Fatal(err)
	}
	tree.Hash = h
	if err := tlog.CheckRecord(proof, tree.N, tree.Hash, index, tlog.RecordHash(leaf)); err != nil {
		t.Fatalf("inclusion of %d in %d: %v", index, tree.N, err)
	}
	return tree
}

func TestIndependentVerifierAcceptsCheckpointsAndProofs(t *testing.T) {
	ctx := context.Background()
	k := testKeys(t, 1)
	l, _, recs := buildLog(t, 1000)
	old, _ := l.Tree(ctx)
	oldSigned, err := SignCheckpoint(k, old)
	if err != nil {
		t.Fatal(err)
	}
	more := leaves(t, 1000, 333)
	l.Append(ctx, more)
	recs = append(recs, more...)
	cur, _ := l.Tree(ctx)
	signed, _ := SignCheckpoint(k, cur)
	for _, i := range []int64{0, 1, 499, 999, 1000, 1332} {
		proof, err := l.ProveInclusion(i, cur.N)
		if err != nil {
			t.Fatal(err)
		}
		independentlyVerify(t, k.Verifier, signed, recs[i], i, proof)
	}
	// consistency of the old checkpoint with the new one
	oldTree := independentlyVerify(t, k.Verifier, oldSigned, recs[5], 5, mustProve(t, l, 5, old.N))
	tp, err := l.ProveConsistency(oldTree.N, cur.N)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckTree(tp, cur.N, cur.Hash, oldTree.N, oldTree.Hash); err != nil {
		t.Fatalf("consistency: %v", err)
	}
	// and the tree hash matches one computed by tlog from the records alone
	if cur.Hash != treeOf(t, recs) {
		t.Fatal("root differs from tlog's own computation")
	}
}

func mustProve(t *testing.T, l *Log, i, n int64) tlog.RecordProof {
	p, err := l.ProveInclusion(i, n)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func treeOf(t *testing.T, recs [][]byte) tlog.Hash {
	var hashes []tlog.Hash
	r := tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(ix))
		for i, x := range ix {
			out[i] = hashes[x]
		}
		return out, nil
	})
	for i, rec := range recs {
		hs, err := tlog.StoredHashes(int64(i), rec, r)
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, hs...)
	}
	h, _ := tlog.TreeHash(int64(len(recs)), r)
	return h
}

func TestVerifyNamesTampering(t *testing.T) {
	ctx := context.Background()
	l, st, recs := buildLog(t, 200)
	tree, _ := l.Tree(ctx)
	cp := []*Checkpoint{{Origin: origin, Tree: tree}}
	if err := Verify(ctx, records(recs), st, cp); err != nil {
		t.Fatalf("intact log: %v", err)
	}
	clone := func() [][]byte { return append([][]byte(nil), recs...) }
	cases := map[string]struct {
		recs [][]byte
		want string
	}{
		"edited":    {func() [][]byte { r := clone(); r[42] = []byte(`{"kind":"forged"}`); return r }(), "record 42"},
		"deleted":   {func() [][]byte { r := clone(); return append(r[:10:10], r[11:]...) }(), "record 10"},
		"reordered": {func() [][]byte { r := clone(); r[7], r[8] = r[8], r[7]; return r }(), "record 7"},
		"inserted":  {func() [][]byte { r := clone(); return append(r[:50:50], append([][]byte{[]byte("{}")}, r[50:]...)...) }(), "record 50"},
		"truncated": {clone()[:150], "deleted or inserted"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			err := Verify(ctx, records(c.recs), st, cp)
			if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want tampering naming %q", err, c.want)
			}
		})
	}
}

func TestVerifyCatchesAForkAfterACheckpoint(t *testing.T) {
	ctx := context.Background()
	l, _, recs := buildLog(t, 100)
	tree, _ := l.Tree(ctx)
	held := []*Checkpoint{{Origin: origin, Tree: tree}}
	// An insider rewrites record 30 and recomputes every hash consistently.
	forged := append([][]byte(nil), recs...)
	forged[30] = []byte(`{"kind":"nothing happened"}`)
	_, st2, _ := buildLog(t, 0)
	New(st2).Append(ctx, forged)
	err := Verify(ctx, records(forged), st2, held)
	if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "rewritten") {
		t.Fatalf("got %v", err)
	}
}

func TestOpenCheckpointRefusesOtherLogsForgeriesAndGarbage(t *testing.T) {
	k, other := testKeys(t, 1), testKeys(t, 2)
	tree := tlog.Tree{N: 5, Hash: tlog.Hash{1}}
	good, _ := SignCheckpoint(k, tree)
	if c, err := OpenCheckpoint(good, k.Verifier); err != nil || c.Tree != tree {
		t.Fatalf("good checkpoint: %v", err)
	}
	fromOther, _ := SignCheckpoint(other, tree)
	forged := []byte(strings.Replace(string(good), "\n5\n", "\n6\n", 1))
	// flip characters inside the signature itself, past its 4-byte key hash
	end := len(good) - 1 // the final newline
	badSig := []byte(string(good[:end-12]) + "AAAAAAAA" + string(good[end-4:]))
	cases := []struct {
		name string
		msg  []byte
		want error
	}{
		{"another log", fromOther, ErrWrongLog},
		{"edited body", forged, ErrBadSignature},
		{"corrupt signature", badSig, ErrBadSignature},
		{"garbage", []byte("hello"), ErrBadCheckpoint},
	}
	for _, c := range cases {
		if _, err := OpenCheckpoint(c.msg, k.Verifier); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
}

func TestConcurrentAppendersLeaveNoGap(t *testing.T) {
	ctx := context.Background()
	st := &MemStore{}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			l := New(st) // separate Log values: like separate processes on one store
			for i := range 50 {
				if _, err := l.Append(ctx, leaves(t, w*1000+i*2, 2)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	size, _ := st.Size(ctx)
	if size != 400 {
		t.Fatalf("size %d, want 400", size)
	}
	if _, err := treeAt(st, size); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkAppend(b *testing.B) {
	recs := leaves(b, 0, 1000)
	l := New(&MemStore{})
	b.ResetTimer()
	for range b.N {
		l.Append(context.Background(), recs)
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "entries/s")
}

func FuzzParseCheckpoint(f *testing.F) {
	f.Add(FormatCheckpoint(origin, tlog.Tree{N: 3}))
	f.Add([]byte("o\n1\nAAAA\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCheckpoint(b)
		if err == nil && c.Tree.N < 0 {
			t.Fatal("negative size accepted")
		}
	})
}

func FuzzParseLeaf(f *testing.F) {
	l := leaves(f, 0, 1)
	f.Add(l[0])
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseLeaf(b)
		if err != nil {
			return
		}
		if _, err := e.Leaf(); err != nil {
			t.Fatal(err)
		}
	})
}

func BenchmarkVerify100k(b *testing.B) {
	_, st, recs := buildLog(b, 100_000)
	tree, _ := treeAt(st, 100_000)
	cp := []*Checkpoint{{Origin: origin, Tree: tree}}
	b.ResetTimer()
	for range b.N {
		if err := Verify(context.Background(), records(recs), st, cp); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*100_000)/b.Elapsed().Seconds(), "entries/s")
}

func TestHashOwnerFindsEveryStoredHash(t *testing.T) {
	st := &MemStore{}
	l := New(st)
	recs := leaves(t, 0, 300)
	l.Append(context.Background(), recs)
	var sets [][]tlog.Hash
	for i := range recs {
		lo, hi := tlog.StoredHashIndex(0, int64(i)), tlog.StoredHashCount(int64(i)+1)
		hs, _ := st.ReadHashes(seq(lo, hi))
		sets = append(sets, hs)
	}
	for x := range tlog.StoredHashCount(300) {
		r, off := HashOwner(x)
		want, _ := st.ReadHashes([]int64{x})
		if r >= 300 || off >= int64(len(sets[r])) || sets[r][off] != want[0] {
			t.Fatalf("hash %d: owner %d offset %d is wrong", x, r, off)
		}
	}
}

func seq(lo, hi int64) []int64 {
	var out []int64
	for i := lo; i < hi; i++ {
		out = append(out, i)
	}
	return out
}
