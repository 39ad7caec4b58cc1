// Package cli is Custody's command line: commands, flags, human and --json
// output, progress on stderr. It holds no logic of its own beyond that.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"

	"github.com/spf13/cobra"

	"github.com/custodyhq/custody/internal/audit"
	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/vault"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// usageError marks errors that are the caller's misuse: exit 2.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// exitCode is an error that is only an exit code: the command has
// already told the user why.
type exitCode int

func (c exitCode) Error() string { return fmt.Sprintf("exit %d", int(c)) }

// globals are the flags every command shares.
type globals struct {
	vault        string
	json         bool
	passwordFile string
	passwordFlag bool // passwordFile came from --password-file
	cacheDir     string
	verbose      bool
	cpuProfile   string
	catalog      string
	s3           s3Flags
	remoteFlags  remoteFlags
	rec          *audit.Recorder
	db           *catalog.DB
	indexPut     []catalog.Version // catalog index changes written with the audit entry
	indexDel     []string
	stdout       io.Writer
	stderr       io.Writer
	stdin        io.Reader
	getenv       func(string) string
	noTerminal   bool
	kdf          vault.KDFParams
	log          *slog.Logger
}

// Env is what one run of the command line sees of its process: its
// streams, its environment and whether it may prompt on a terminal.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Getenv reads the environment; nil reads the process's own.
	Getenv func(string) string
	// NoTerminal never prompts for a passphrase on /dev/tty.
	NoTerminal bool
	// KDF is the Argon2id cost of the key files this run creates (init,
	// key add, protect's first start); zero is vault.DefaultKDF. Only Go
	// code can set it: tests use a cheap one, so that every later command
	// on their vaults opens it in microseconds. No flag or variable does.
	KDF vault.KDFParams
}

// Main runs the command line in this process's environment and returns
// the process exit code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return Run(ctx, args, Env{Stdin: stdin, Stdout: stdout, Stderr: stderr})
}

// Run runs the command line once with args in env and returns the exit
// code. Runs share nothing, so tests call it concurrently in one process.
func Run(ctx context.Context, args []string, env Env) int {
	stdout, stderr := env.Stdout, env.Stderr
	g := &globals{stdout: stdout, stderr: stderr, stdin: env.Stdin, getenv: env.Getenv, noTerminal: env.NoTerminal, kdf: env.KDF}
	if g.getenv == nil {
		g.getenv = os.Getenv
	}
	root := newRoot(g)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetIn(env.Stdin)
	err := root.ExecuteContext(ctx)
	g.closeCatalog()
	if err == nil {
		return ExitOK
	}
	var code exitCode
	if errors.As(err, &code) {
		return int(code) // the command said why itself
	}
	msg := err.Error()
	fmt.Fprintf(stderr, "custody: %s\n", strings.ReplaceAll(msg, "\n", " "))
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(msg) {
		return ExitUsage
	}
	return ExitFailure
}

// refuseUnknownSubcommands makes every command group below cmd that does
// nothing by itself (report, audit, token, ...) a usage error when given
// a subcommand it does not have, instead of printing its help and exiting
// 0; without arguments it still prints its help.
func refuseUnknownSubcommands(cmd *cobra.Command) {
	for _, c := range cmd.Commands() {
		refuseUnknownSubcommands(c)
	}
	if cmd.HasParent() && cmd.HasSubCommands() && !cmd.Runnable() {
		cmd.Args = cobra.ArbitraryArgs
		cmd.RunE = func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for %q; see '%s --help'", args[0], c.CommandPath(), c.CommandPath())
			}
			return c.Help()
		}
	}
}

// isCobraUsage recognises the errors cobra returns for bad flags and args.
func isCobraUsage(msg string) bool {
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "flag needs an argument", "invalid argument", "accepts ", "requires at least", "requires at most", "required flag", "if any flags in the group"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:           "custody",
		Short:         "Chain of custody for AI/ML data: versioned, encrypted, deduplicated snapshots",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPostRun: func(cmd *cobra.Command, args []string) {
			if g.cpuProfile != "" {
				pprof.StopCPUProfile()
			}
		},
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			level := slog.LevelWarn
			if g.verbose {
				level = slog.LevelDebug
			}
			g.log = slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: level}))
			if g.vault == "" {
				g.vault = g.getenv("CUSTODY_VAULT")
			}
			if g.passwordFile != "" {
				g.passwordFlag = true // the flag wins over CUSTODY_PASSWORD too
			} else {
				g.passwordFile = g.getenv("CUSTODY_PASSWORD_FILE")
			}
			if g.cacheDir == "" {
				g.cacheDir = g.getenv("CUSTODY_CACHE")
			}
			if g.cpuProfile != "" {
				f, err := os.Create(g.cpuProfile)
				if err != nil {
					return err
				}
				return pprof.StartCPUProfile(f)
			}
			return nil
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.vault, "vault", "", "vault location: a directory or s3://bucket/prefix; env CUSTODY_VAULT")
	pf.StringVar(&g.s3.endpoint, "s3-endpoint", "", "S3-compatible server for s3:// locations, e.g. http://127.0.0.1:7070; env CUSTODY_S3_ENDPOINT (default: AWS)")
	pf.StringVar(&g.s3.region, "s3-region", "", "S3 region (default: AWS_REGION or the profile's; us-east-1 with --s3-endpoint)")
	pf.BoolVar(&g.s3.insecure, "s3-insecure-tls", false, "accept any TLS certificate from the S3 endpoint (test servers only)")
	pf.BoolVar(&g.json, "json", false, "print machine-readable JSON")
	pf.StringVar(&g.passwordFile, "password-file", "", "read the passphrase from this file; env CUSTODY_PASSWORD_FILE (or set CUSTODY_PASSWORD)")
	pf.StringVar(&g.cacheDir, "cache-dir", "", "local cache directory; env CUSTODY_CACHE (default: the user cache dir)")
	pf.StringVar(&g.catalog, "catalog", "", "catalog database: a SQLite file or postgres://...; env CUSTODY_CATALOG (default: catalog.db in the vault directory)")
	pf.BoolVarP(&g.verbose, "verbose", "v", false, "log more")
	pf.StringVar(&g.cpuProfile, "cpu-profile", "", "write a Go CPU profile of the command to this file")
	pf.MarkHidden("cpu-profile")
	pf.StringVar(&g.remoteFlags.server, "server", "", "ask a running daemon (https://host:port) instead of opening the vault: log, ls, diff, audit log, incidents, lockouts, offsite status; env CUSTODY_SERVER")
	pf.StringVar(&g.remoteFlags.tokenFile, "token-file", "", "with --server: read the API token from this file; env CUSTODY_TOKEN (the secret itself) or CUSTODY_TOKEN_FILE")
	pf.StringVar(&g.remoteFlags.fingerprint, "server-fingerprint", "", "with --server: trust exactly the certificate with this SHA-256 fingerprint (as protect prints it); env CUSTODY_SERVER_FINGERPRINT")
	pf.StringVar(&g.remoteFlags.caFile, "server-ca", "", "with --server: trust certificates signed by this CA file (or the self-signed cert.pem itself); env CUSTODY_SERVER_CA")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(
		newInitCmd(g), newSnapshotCmd(g), newLogCmd(g), newLsCmd(g), newDiffCmd(g),
		newRestoreCmd(g), newCheckCmd(g), newForgetCmd(g), newPruneCmd(g), newKeyCmd(g), newAuditCmd(g), newCatalogCmd(g), newGateCmd(g), newOffsiteCmd(g), newLockCmd(g), newWatchCmd(g), newReportCmd(g),
		newGuardCmd(g), newIncidentsCmd(g), newLockoutsCmd(g), newDrillCmd(g), newDrillWorkerCmd(g), newConfigCmd(g), newTokenCmd(g), newProtectCmd(g), newServeCmd(g),
	)
	refuseUnknownSubcommands(root)
	return root
}
