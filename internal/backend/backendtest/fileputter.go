package backendtest

import (
	"context"
	"errors"
	"testing"

	"github.com/custodyhq/custody/internal/backend"
)

// testFilePutter holds a backend that offers backend.FilePutter to the
// same rules as Put; backends without it skip.
func testFilePutter(t *testing.T, b backend.Backend) {
	fp, ok := b.(backend.FilePutter)
	if !ok {
		t.Skip("backend does not implement FilePutter")
	}
	ctx := context.Background()
	h := handle(backend.Packs, "from a file")
	putFile := func(ctx context.Context, data string) error {
		t.Helper()
		f, err := fp.CreateTemp()
		if err != nil {
			t.Fatalf("CreateTemp: %v", err)
		}
		if _, err := f.WriteString(data); err != nil {
			fp.DiscardTemp(f)
			t.Fatalf("write temporary file: %v", err)
		}
		for n := range listAll(t, b, h.Kind) {
			if n != h.Name {
				t.Errorf("List(%s) shows the temporary file as %q", h.Kind, n)
			}
		}
		return fp.PutFile(ctx, h, f)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := putFile(cancelled, "cancelled"); !errors.Is(err, context.Canceled) {
		t.Errorf("PutFile with cancelled context: err = %v, want context.Canceled", err)
	}
	if err := putFile(ctx, "first"); err != nil {
		t.Fatalf("PutFile: %v", err)
	}
	if err := putFile(ctx, "second"); !errors.Is(err, backend.ErrExists) {
		t.Errorf("second PutFile: err = %v, want ErrExists", err)
	}
	if err := b.Put(ctx, h, []byte("third")); !errors.Is(err, backend.ErrExists) {
		t.Errorf("Put over a PutFile object: err = %v, want ErrExists", err)
	}
	mustGet(t, b, h, []byte("first"))

	f, err := fp.CreateTemp()
	if err != nil {
		t.Fatalf("CreateTemp: %v", err)
	}
	fp.DiscardTemp(f)
	if err := fp.PutFile(ctx, handle(backend.Packs, "discarded"), f); err == nil {
		t.Error("PutFile of a discarded file succeeded")
	}
}
