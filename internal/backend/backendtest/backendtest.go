// Package backendtest is the conformance suite every backend.Backend must
// pass, so the vault can rely on the same semantics from a local directory,
// an in-memory store and S3.
package backendtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/backend"
)

// Run runs the suite as subtests. open must return a fresh, empty backend
// for each subtest; Run closes it when the subtest ends.
func Run(t *testing.T, open func(t *testing.T) backend.Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b backend.Backend)
	}{
		{"Location", testLocation},
		{"RoundTripEveryKind", testRoundTrip},
		{"PutIsWriteOnce", testWriteOnce},
		{"ConcurrentPutsHaveOneWinner", testConcurrentPut},
		{"GetRange", testGetRange},
		{"Stat", testStat},
		{"ListReportsExactlyTheKind", testList},
		{"ListStopsOnCallbackError", testListCallbackError},
		{"DeleteThenGetIsNotFound", testDelete},
		{"DeleteMissingIsNotFound", testDeleteMissing},
		{"RefusesInvalidHandles", testInvalidHandles},
		{"AcceptsEdgeCaseNames", testValidNames},
		{"CancelledContextFails", testCancelled},
		{"LargeObject", testLarge},
		{"EmptyObject", testEmpty},
		{"BuffersAreCopied", testCopies},
		{"FilePutter", testFilePutter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := open(t)
			t.Cleanup(func() { _ = b.Close() })
			tt.fn(t, b)
		})
	}
}

// name is a deterministic, valid, hash-shaped object name, so pack names
// spread over fan-out folders like real ones.
func name(seed string) string {
	sum := sha256.Sum256([]byte(seed))
	return hex.EncodeToString(sum[:])
}

// handle returns a valid handle of kind derived from seed.
func handle(kind backend.Kind, seed string) backend.Handle {
	if kind.Singleton() {
		return backend.Handle{Kind: kind}
	}
	return backend.Handle{Kind: kind, Name: name(seed)}
}

func put(t *testing.T, b backend.Backend, h backend.Handle, data []byte) {
	t.Helper()
	if err := b.Put(context.Background(), h, data); err != nil {
		t.Fatalf("Put(%s): %v", h, err)
	}
}

func mustGet(t *testing.T, b backend.Backend, h backend.Handle, want []byte) {
	t.Helper()
	got, err := b.Get(context.Background(), h)
	if err != nil {
		t.Fatalf("Get(%s): %v", h, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%s) = %d bytes %.32q, want %d bytes %.32q", h, len(got), got, len(want), want)
	}
}

func wantNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("%s: err = %v, want ErrNotFound", what, err)
	}
}

// listAll returns name -> size for every object of kind.
func listAll(t *testing.T, b backend.Backend, kind backend.Kind) map[string]int64 {
	t.Helper()
	got := map[string]int64{}
	err := b.List(context.Background(), kind, func(info backend.Info) error {
		if info.Handle.Kind != kind {
			t.Errorf("List(%s) reported %s", kind, info.Handle)
		}
		if _, dup := got[info.Handle.Name]; dup {
			t.Errorf("List(%s) reported %s twice", kind, info.Handle)
		}
		if info.ModTime.IsZero() {
			t.Errorf("List(%s) reported %s with zero ModTime", kind, info.Handle)
		}
		got[info.Handle.Name] = info.Size
		return nil
	})
	if err != nil {
		t.Fatalf("List(%s): %v", kind, err)
	}
	return got
}

func testLocation(t *testing.T, b backend.Backend) {
	if b.Location() == "" {
		t.Error("Location() is empty; error messages need it")
	}
}

func testRoundTrip(t *testing.T, b backend.Backend) {
	for _, kind := range backend.Kinds() {
		h := handle(kind, "round trip")
		data := append([]byte(h.String()+"\x00\xff binary\n"), make([]byte, 100)...)
		put(t, b, h, data)
		mustGet(t, b, h, data)
	}
}

func testWriteOnce(t *testing.T, b backend.Backend) {
	ctx := context.Background()
	for _, h := range []backend.Handle{handle(backend.Index, "once"), {Kind: backend.Config}} {
		first := []byte("first")
		put(t, b, h, first)
		err := b.Put(ctx, h, []byte("second, longer content"))
		if !errors.Is(err, backend.ErrExists) {
			t.Errorf("second Put(%s): err = %v, want ErrExists", h, err)
		}
		if err := b.Put(ctx, h, []byte{}); !errors.Is(err, backend.ErrExists) {
			t.Errorf("empty Put(%s) over an object: err = %v, want ErrExists", h, err)
		}
		mustGet(t, b, h, first)
	}
}

func testStat(t *testing.T, b backend.Backend) {
	ctx := context.Background()
	h := handle(backend.Versions, "stat")
	put(t, b, h, make([]byte, 4321))
	info, err := b.Stat(ctx, h)
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if info.Handle != h || info.Size != 4321 {
		t.Errorf("Stat = %+v, want handle %s size 4321", info, h)
	}
	// A wide window: it catches a zero or client-invented time, not the
	// skew of a remote server's clock.
	if d := time.Since(info.ModTime); d < -time.Hour || d > time.Hour {
		t.Errorf("Stat ModTime = %v, %v away from now", info.ModTime, d)
	}
	_, err = b.Stat(ctx, handle(backend.Versions, "missing"))
	wantNotFound(t, "Stat(missing)", err)
}

func testList(t *testing.T, b backend.Backend) {
	want := map[backend.Kind]map[string]int64{}
	for _, kind := range backend.Kinds() {
		want[kind] = map[string]int64{}
	}
	add := func(kind backend.Kind, seed string, size int) {
		h := handle(kind, seed)
		put(t, b, h, make([]byte, size))
		want[kind][h.Name] = int64(size)
	}
	for i := range 3 {
		add(backend.Index, fmt.Sprint("index", i), 10+i)
	}
	for i := range 40 { // enough to land in several fan-out folders
		add(backend.Packs, fmt.Sprint("pack", i), i)
	}
	add(backend.Config, "", 7)
	add(backend.Marker, "", 5)
	// Keys, Versions and Pending stay empty: listing them must work and say nothing.
	for _, kind := range backend.Kinds() {
		got := listAll(t, b, kind)
		if len(got) != len(want[kind]) {
			t.Errorf("List(%s) reported %d objects, want %d", kind, len(got), len(want[kind]))
		}
		for n, size := range want[kind] {
			if gotSize, ok := got[n]; !ok || gotSize != size {
				t.Errorf("List(%s): %q size %d (listed %v), want size %d", kind, n, gotSize, ok, size)
			}
		}
	}
}

func testListCallbackError(t *testing.T, b backend.Backend) {
	for i := range 3 {
		put(t, b, handle(backend.Keys, fmt.Sprint(i)), []byte("k"))
	}
	stop := errors.New("stop here")
	calls := 0
	err := b.List(context.Background(), backend.Keys, func(backend.Info) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("List with failing callback: err = %v after %d calls, want the callback's error after 1", err, calls)
	}
}

func testDelete(t *testing.T, b backend.Backend) {
	ctx := context.Background()
	for _, h := range []backend.Handle{handle(backend.Packs, "delete"), {Kind: backend.Config}} {
		put(t, b, h, []byte("doomed"))
		if err := b.Delete(ctx, h); err != nil {
			t.Fatalf("Delete(%s): %v", h, err)
		}
		_, err := b.Get(ctx, h)
		wantNotFound(t, "Get after Delete", err)
		_, err = b.GetRange(ctx, h, 0, 1)
		wantNotFound(t, "GetRange after Delete", err)
		_, err = b.Stat(ctx, h)
		wantNotFound(t, "Stat after Delete", err)
		if got := listAll(t, b, h.Kind); len(got) != 0 {
			t.Errorf("List(%s) after Delete = %v, want nothing", h.Kind, got)
		}
	}
}

func testDeleteMissing(t *testing.T, b backend.Backend) {
	ctx := context.Background()
	wantNotFound(t, "Delete(never stored)", b.Delete(ctx, handle(backend.Pending, "never")))
	wantNotFound(t, "Delete(missing singleton)", b.Delete(ctx, backend.Handle{Kind: backend.Marker}))
	h := handle(backend.Pending, "twice")
	put(t, b, h, []byte("x"))
	if err := b.Delete(ctx, h); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantNotFound(t, "second Delete", b.Delete(ctx, h))
}
