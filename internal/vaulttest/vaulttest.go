// Package vaulttest builds small real vaults, on the in-memory backend and
// with cheap key derivation, for the tests of packages above the vault.
package vaulttest

import (
	"context"
	"testing"

	"github.com/custodyhq/custody/internal/backend"
	"github.com/custodyhq/custody/internal/backend/mem"
	"github.com/custodyhq/custody/internal/snapshot"
	"github.com/custodyhq/custody/internal/vault"
)

// Passphrase opens every vault this package makes.
const Passphrase = "test passphrase"

// New makes and opens a vault on a fresh in-memory backend.
func New(t testing.TB) (*vault.Vault, *mem.Mem) {
	t.Helper()
	be := mem.New()
	Init(t, be)
	return Reopen(t, be), be
}

// Init makes a vault on be with cheap key derivation, for tests that need
// another backend than New's.
func Init(t testing.TB, be backend.Backend) {
	t.Helper()
	if err := vault.Init(context.Background(), be, Passphrase, vault.InitOptions{KDF: vault.KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}}); err != nil {
		t.Fatal(err)
	}
}

// Reopen opens the vault on be again, as a new process would.
func Reopen(t testing.TB, be backend.Backend) *vault.Vault {
	t.Helper()
	v, err := vault.Open(context.Background(), be, Passphrase, vault.Options{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

// Snapshot archives dir as a new version of dataset, the way the CLI does.
func Snapshot(t testing.TB, v *vault.Vault, dataset, dir string) *vault.Version {
	t.Helper()
	taken, err := snapshot.Take(context.Background(), v, dataset, "", "", dir, snapshot.ArchiveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return taken.Version
}
