package catalog

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

func TestChangeMarkMovesWithEveryCommitFromAnyHandle(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "catalog.db")
	a, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(ctx, path) // another process, as far as a knows
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	m1, ok := a.ChangeMark()
	if !ok {
		t.Fatal("SQLite has no change mark")
	}
	if _, err := a.Lockouts(ctx); err != nil {
		t.Fatal(err)
	}
	if m2, _ := a.ChangeMark(); m2 != m1 {
		t.Fatalf("a read moved the mark: %q → %q", m1, m2)
	}
	if err := b.AddLockout(ctx, Lockout{UID: 1234, User: "x", Since: time.Now(), By: "test"}); err != nil {
		t.Fatal(err)
	}
	if m3, _ := a.ChangeMark(); m3 == m1 {
		t.Fatalf("a commit by another handle left the mark at %q", m1)
	}
}
