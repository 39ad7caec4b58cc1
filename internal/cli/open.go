package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/custodyhq/custody/internal/backend"
	"github.com/custodyhq/custody/internal/backend/local"
	"github.com/custodyhq/custody/internal/vault"
)

// openBackend opens the vault location; create makes the directory.
func (g *globals) openBackend(create bool) (backend.Backend, error) {
	if g.vault == "" {
		return nil, usagef("no vault given: pass --vault DIR or set CUSTODY_VAULT")
	}
	if strings.Contains(g.vault, "://") {
		return nil, usagef("vault %q: only local directories are supported so far", g.vault)
	}
	if create {
		return local.Create(g.vault)
	}
	st, err := os.Stat(g.vault)
	if err != nil {
		return nil, fmt.Errorf("%w: %s does not exist (create a vault with 'custody init --vault %s')", vault.ErrNotVault, g.vault, g.vault)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%w: %s is not a directory", vault.ErrNotVault, g.vault)
	}
	return local.New(g.vault)
}

// openVault opens and unlocks the vault.
func (g *globals) openVault(ctx context.Context) (*vault.Vault, error) {
	be, err := g.openBackend(false)
	if err != nil {
		return nil, err
	}
	pass, err := g.passphrase("", false)
	if err != nil {
		be.Close()
		return nil, err
	}
	v, err := vault.Open(ctx, be, pass, vault.Options{CacheDir: g.cacheDir, Logger: g.log})
	if err != nil {
		be.Close()
		return nil, err
	}
	return v, nil
}

func closeVault(v *vault.Vault) {
	v.Close()
	v.Backend().Close()
}

// passphrase reads a passphrase: from envVar (default CUSTODY_PASSWORD), the
// password file, or a prompt on the terminal (twice when confirm is set).
func (g *globals) passphrase(envVar string, confirm bool) (string, error) {
	fileVar := g.passwordFile
	if envVar == "" {
		envVar = "CUSTODY_PASSWORD"
	} else {
		fileVar = os.Getenv(envVar + "_FILE")
	}
	if p := os.Getenv(envVar); p != "" {
		return p, nil
	}
	if fileVar != "" {
		b, err := os.ReadFile(fileVar)
		if err != nil {
			return "", fmt.Errorf("read passphrase file: %w", err)
		}
		p := string(bytes.TrimRight(b, "\r\n"))
		if p == "" {
			return "", fmt.Errorf("passphrase file %s is empty", fileVar)
		}
		return p, nil
	}
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil || !term.IsTerminal(int(tty.Fd())) {
		if tty != nil {
			tty.Close()
		}
		return "", usagef("no passphrase: set %s or %s_FILE, or run in a terminal to be asked", envVar, envVar)
	}
	defer tty.Close()
	read := func(prompt string) (string, error) {
		fmt.Fprint(tty, prompt)
		b, err := term.ReadPassword(int(tty.Fd()))
		fmt.Fprintln(tty)
		return string(b), err
	}
	label := "passphrase"
	if envVar != "CUSTODY_PASSWORD" {
		label = "new passphrase"
	}
	p, err := read("Enter " + label + ": ")
	if err != nil {
		return "", fmt.Errorf("read passphrase: %w", err)
	}
	if p == "" {
		return "", errors.New("empty passphrase")
	}
	if confirm {
		again, err := read("Repeat " + label + ": ")
		if err != nil {
			return "", fmt.Errorf("read passphrase: %w", err)
		}
		if again != p {
			return "", errors.New("the passphrases do not match")
		}
	}
	return p, nil
}
