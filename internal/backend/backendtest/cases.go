package backendtest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/custodyhq/custody/internal/backend"
)

// testConcurrentPut races 16 writers on one name while readers poll it.
// Each writer's payload is one repeated byte, so a torn or mixed object is
// visible in any read.
func testConcurrentPut(t *testing.T, b backend.Backend) {
	const writers, readers, size = 16, 4, 256 << 10
	ctx := context.Background()
	h := handle(backend.Packs, "contended")
	payload := func(i int) []byte { return bytes.Repeat([]byte{byte(i + 1)}, size) }

	start := make(chan struct{})
	done := make(chan struct{})
	errs := make([]error, writers)
	seen := make([][]byte, readers) // the distinct payload bytes each reader saw
	var wg, writing sync.WaitGroup
	for i := range writers {
		writing.Go(func() {
			<-start
			errs[i] = b.Put(ctx, h, payload(i))
		})
	}
	for r := range readers {
		wg.Go(func() {
			<-start
			for last := false; !last; {
				select {
				case <-done:
					last = true // one more read after every writer returned
				default:
				}
				data, err := b.Get(ctx, h)
				if errors.Is(err, backend.ErrNotFound) {
					continue
				}
				if err != nil {
					t.Errorf("Get during race: %v", err)
					return
				}
				if len(data) != size || !bytes.Equal(data, bytes.Repeat(data[:1], size)) {
					t.Errorf("Get during race returned a torn object of %d bytes", len(data))
					return
				}
				if !bytes.Contains(seen[r], data[:1]) {
					seen[r] = append(seen[r], data[0])
				}
			}
		})
	}
	close(start)
	writing.Wait()
	close(done)
	wg.Wait()

	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("writers %d and %d both succeeded", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, backend.ErrExists):
			t.Errorf("losing writer %d: err = %v, want ErrExists", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no writer succeeded")
	}
	mustGet(t, b, h, payload(winner))
	for r, s := range seen {
		for _, c := range s {
			if int(c) != winner+1 {
				t.Errorf("reader %d saw writer %d's bytes, but writer %d won", r, int(c)-1, winner)
			}
		}
	}
}

func testGetRange(t *testing.T, b backend.Backend) {
	ctx := context.Background()
	data := make([]byte, 1000)
	for i := range data {
		data[i] = byte(i % 251)
	}
	h := handle(backend.Packs, "range")
	put(t, b, h, data)
	tests := []struct {
		name           string
		offset, length int64
		ok             bool
	}{
		{"start", 0, 10, true},
		{"middle", 100, 200, true},
		{"end", 990, 10, true},
		{"whole", 0, 1000, true},
		{"empty at end", 1000, 0, true},
		{"past end", 995, 10, false},
		{"offset past end", 1001, 0, false},
		{"huge length", 1, math.MaxInt64, false},
		{"negative offset", -1, 10, false},
		{"negative length", 0, -1, false},
	}
	for _, tt := range tests {
		got, err := b.GetRange(ctx, h, tt.offset, tt.length)
		switch {
		case tt.ok && err != nil:
			t.Errorf("GetRange %s (%d, %d): %v", tt.name, tt.offset, tt.length, err)
		case tt.ok && !bytes.Equal(got, data[tt.offset:tt.offset+tt.length]):
			t.Errorf("GetRange %s (%d, %d) returned the wrong %d bytes", tt.name, tt.offset, tt.length, len(got))
		case !tt.ok && err == nil:
			t.Errorf("GetRange %s (%d, %d) = %d bytes, want an error", tt.name, tt.offset, tt.length, len(got))
		case !tt.ok && tt.offset >= 0 && tt.length >= 0 && !errors.Is(err, io.ErrUnexpectedEOF):
			t.Errorf("GetRange %s (%d, %d): err = %v, want io.ErrUnexpectedEOF", tt.name, tt.offset, tt.length, err)
		}
	}
	_, err := b.GetRange(ctx, handle(backend.Packs, "missing"), 0, 1)
	wantNotFound(t, "GetRange(missing)", err)
}

// invalidHandles could escape a folder or key prefix, or are not names at all.
var invalidHandles = []backend.Handle{
	{Kind: backend.Index, Name: "../x"},
	{Kind: backend.Index, Name: "a/b"},
	{Kind: backend.Index, Name: `a\b`},
	{Kind: backend.Index, Name: "/etc"},
	{Kind: backend.Index, Name: ""},
	{Kind: backend.Index, Name: "."},
	{Kind: backend.Index, Name: ".."},
	{Kind: backend.Index, Name: "a b"},
	{Kind: backend.Index, Name: "a\x00b"},
	{Kind: backend.Index, Name: "é"},
	{Kind: backend.Index, Name: strings.Repeat("a", backend.MaxNameLen+1)},
	{Kind: backend.Packs, Name: "a"},
	{Kind: backend.Packs, Name: "..."}, // its fan-out folder would be ".."
	{Kind: backend.Config, Name: "x"},
	{Kind: backend.Marker, Name: "../x"},
	{Kind: "tmp", Name: "x"},
	{Kind: "../x", Name: "y"},
	{Kind: "", Name: "y"},
}

func testInvalidHandles(t *testing.T, b backend.Backend) {
	ctx := context.Background()
	check := func(op string, h backend.Handle, err error) {
		t.Helper()
		if !errors.Is(err, backend.ErrInvalidHandle) {
			t.Errorf("%s(%q, %q): err = %v, want ErrInvalidHandle", op, h.Kind, h.Name, err)
			return
		}
		// The message must let a user find the bad name.
		if printable(h.Name) && !strings.Contains(err.Error(), h.Name) ||
			printable(string(h.Kind)) && !strings.Contains(err.Error(), string(h.Kind)) {
			t.Errorf("%s(%q, %q): error %q does not name the handle", op, h.Kind, h.Name, err)
		}
	}
	for _, h := range invalidHandles {
		check("Put", h, b.Put(ctx, h, []byte("x")))
		_, err := b.Get(ctx, h)
		check("Get", h, err)
		_, err = b.GetRange(ctx, h, 0, 1)
		check("GetRange", h, err)
		_, err = b.Stat(ctx, h)
		check("Stat", h, err)
		check("Delete", h, b.Delete(ctx, h))
	}
	for _, kind := range []backend.Kind{"tmp", "../x", "", "data/00"} {
		err := b.List(ctx, kind, func(backend.Info) error { return nil })
		if !errors.Is(err, backend.ErrInvalidHandle) {
			t.Errorf("List(%q): err = %v, want ErrInvalidHandle", kind, err)
		}
	}
	for _, kind := range backend.Kinds() {
		if got := listAll(t, b, kind); len(got) != 0 {
			t.Errorf("refused Puts stored something: List(%s) = %v", kind, got)
		}
	}
}

func printable(s string) bool {
	for _, c := range []byte(s) {
		if c < ' ' || c > '~' {
			return false
		}
	}
	return s != ""
}

// testValidNames stores names at the edges of what Validate allows.
func testValidNames(t *testing.T, b backend.Backend) {
	for _, n := range []string{"ab", ".a.", ".hidden", "-dash", "A_Z.a-z.0_9", strings.Repeat("f", backend.MaxNameLen)} {
		for _, kind := range []backend.Kind{backend.Index, backend.Packs} {
			h := backend.Handle{Kind: kind, Name: n}
			put(t, b, h, []byte(n))
			mustGet(t, b, h, []byte(n))
			if _, ok := listAll(t, b, kind)[n]; !ok {
				t.Errorf("List(%s) misses %q", kind, n)
			}
		}
	}
}

func testCancelled(t *testing.T, b backend.Backend) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	h := handle(backend.Index, "cancelled")
	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with cancelled context: err = %v, want context.Canceled", op, err)
		}
	}
	check("Put", b.Put(ctx, h, []byte("x")))
	_, err := b.Stat(context.Background(), h)
	wantNotFound(t, "Stat after cancelled Put", err)

	put(t, b, h, []byte("x"))
	_, err = b.Get(ctx, h)
	check("Get", err)
	_, err = b.GetRange(ctx, h, 0, 1)
	check("GetRange", err)
	_, err = b.Stat(ctx, h)
	check("Stat", err)
	check("List", b.List(ctx, backend.Index, func(backend.Info) error {
		t.Error("List called fn with a cancelled context")
		return nil
	}))
	check("Delete", b.Delete(ctx, h))
	mustGet(t, b, h, []byte("x"))
}

func testLarge(t *testing.T, b backend.Backend) {
	data := make([]byte, 20<<20)
	rng := rand.NewChaCha8([32]byte{1})
	_, _ = rng.Read(data)
	h := handle(backend.Packs, "large")
	put(t, b, h, data)
	mustGet(t, b, h, data)
	got, err := b.GetRange(context.Background(), h, 10<<20+3, 1<<20)
	if err != nil || !bytes.Equal(got, data[10<<20+3:11<<20+3]) {
		t.Errorf("GetRange in a large object: %d bytes, err %v", len(got), err)
	}
	if size := listAll(t, b, backend.Packs)[h.Name]; size != int64(len(data)) {
		t.Errorf("List size = %d, want %d", size, len(data))
	}
}

func testEmpty(t *testing.T, b backend.Backend) {
	ctx := context.Background()
	for _, h := range []backend.Handle{handle(backend.Index, "empty"), handle(backend.Keys, "nil")} {
		var data []byte
		if h.Kind == backend.Index {
			data = []byte{}
		}
		put(t, b, h, data)
		mustGet(t, b, h, nil)
		if info, err := b.Stat(ctx, h); err != nil || info.Size != 0 {
			t.Errorf("Stat(%s) = %+v, %v; want size 0", h, info, err)
		}
		if got, err := b.GetRange(ctx, h, 0, 0); err != nil || len(got) != 0 {
			t.Errorf("GetRange(%s, 0, 0) = %q, %v", h, got, err)
		}
		if size, ok := listAll(t, b, h.Kind)[h.Name]; !ok || size != 0 {
			t.Errorf("List(%s) size %d listed %v, want size 0", h.Kind, size, ok)
		}
	}
}

// testCopies checks that the backend neither keeps the caller's buffer nor
// hands out its own: the vault reuses buffers.
func testCopies(t *testing.T, b backend.Backend) {
	ctx := context.Background()
	h := handle(backend.Index, "copies")
	buf := []byte("original")
	put(t, b, h, buf)
	copy(buf, "CHANGED!")
	mustGet(t, b, h, []byte("original"))
	got, _ := b.Get(ctx, h)
	copy(got, "CHANGED!")
	part, _ := b.GetRange(ctx, h, 0, 4)
	copy(part, "XXXX")
	mustGet(t, b, h, []byte("original"))
}
