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
	"github.com/custodyhq/custody/internal/backend/s3"
	"github.com/custodyhq/custody/internal/vault"
)

// s3Flags reach S3 locations: the vault's, or an offsite's when added.
type s3Flags struct {
	endpoint, region string
	insecure         bool
}

func (g *globals) s3WithEnv() s3Flags {
	f := g.s3
	if f.endpoint == "" {
		f.endpoint = g.getenv("CUSTODY_S3_ENDPOINT")
	}
	return f
}

// openS3 opens an s3:// location. Credentials come from the AWS
// environment or profiles, never from flags, so they stay out of argv.
func (g *globals) openS3(ctx context.Context, location string) (*s3.S3, error) {
	cfg, err := s3.ParseURL(location)
	if err != nil {
		return nil, usageError{err}
	}
	f := g.s3WithEnv()
	cfg.Endpoint, cfg.Region, cfg.InsecureSkipVerify = f.endpoint, f.region, f.insecure
	return s3.New(ctx, cfg.WithKeys(g.awsKeys()))
}

// awsKeys are the access keys in this run's environment, which the AWS
// SDK would otherwise read from the process's.
func (g *globals) awsKeys() s3.Keys {
	return s3.Keys{AccessKey: g.getenv("AWS_ACCESS_KEY_ID"), SecretKey: g.getenv("AWS_SECRET_ACCESS_KEY"), SessionToken: g.getenv("AWS_SESSION_TOKEN")}
}

// openBackend opens the vault location; create makes the directory.
func (g *globals) openBackend(ctx context.Context, create bool) (backend.Backend, error) {
	if g.vault == "" {
		return nil, usagef("no vault given: pass --vault DIR or set CUSTODY_VAULT")
	}
	if strings.HasPrefix(g.vault, "s3://") {
		return g.openS3(ctx, g.vault)
	}
	if strings.Contains(g.vault, "://") {
		return nil, usagef("vault %q: use a directory or s3://bucket/prefix", g.vault)
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
	be, err := g.openBackend(ctx, false)
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

// passphrase reads a passphrase: from --password-file, envVar (default
// CUSTODY_PASSWORD), its _FILE variable, or a prompt on the terminal (twice
// when confirm is set). A flag wins over the environment.
func (g *globals) passphrase(envVar string, confirm bool) (string, error) {
	fileVar, flag := g.passwordFile, g.passwordFlag
	if envVar == "" {
		envVar = "CUSTODY_PASSWORD"
	} else {
		fileVar, flag = g.getenv(envVar+"_FILE"), false
	}
	if p := g.getenv(envVar); p != "" && !flag {
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
	tty, err := g.terminal()
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

// terminal opens the controlling terminal to prompt on, unless this run
// must not prompt.
func (g *globals) terminal() (*os.File, error) {
	if g.noTerminal {
		return nil, errors.New("no terminal")
	}
	return os.OpenFile("/dev/tty", os.O_RDWR, 0)
}
