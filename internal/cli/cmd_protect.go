package cli

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/custodyhq/custody/internal/audit"
	"github.com/custodyhq/custody/internal/backend/local"
	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/config"
	"github.com/custodyhq/custody/internal/daemon"
	"github.com/custodyhq/custody/internal/ledger"
	"github.com/custodyhq/custody/internal/server/auth"
	"github.com/custodyhq/custody/internal/vault"
	"github.com/custodyhq/custody/internal/watch"
)

// dataDir is where `custody protect` keeps its vault, catalog,
// certificate and passphrase: CUSTODY_DATA_DIR, else $XDG_DATA_HOME/custody,
// else /var/lib/custody for root and ~/.local/share/custody for others.
func (g *globals) dataDir() (string, error) {
	if d := g.getenv("CUSTODY_DATA_DIR"); d != "" {
		return filepath.Abs(d)
	}
	if d := g.getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "custody"), nil
	}
	if os.Geteuid() == 0 {
		return "/var/lib/custody", nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no data directory: set CUSTODY_DATA_DIR (%w)", err)
	}
	return filepath.Join(home, ".local", "share", "custody"), nil
}

type daemonFlags struct {
	address string
	backend string
}

func (f *daemonFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.address, "address", "", "listen on this host:port (default 127.0.0.1:8443, or server.address in the config)")
	cmd.Flags().StringVar(&f.backend, "backend", "auto", "how to watch: auto (fanotify as root, else inotify), fanotify or inotify")
}

func newProtectCmd(g *globals) *cobra.Command {
	var df daemonFlags
	var dataset, offsiteURL string
	var every, quiet time.Duration
	cmd := &cobra.Command{
		Use:   "protect DIR [--offsite s3://bucket/prefix]",
		Short: "Protect DIR from now on: versioned, watched, guarded and backed up, with the API on 127.0.0.1 (foreground)",
		Long: `protect is Custody's main job on embedded defaults. The first time, it
creates a vault and catalog under the data directory (CUSTODY_DATA_DIR, else
$XDG_DATA_HOME/custody, /var/lib/custody for root, ~/.local/share/custody),
takes a first version of DIR, and prints where the vault is, the API's
address and certificate fingerprint, and an admin token (shown once, kept
only hashed). Then, until Ctrl-C or SIGTERM, it watches DIR (who changed
which file, in the ledger), guards it against ransomware, snapshots it
every hour and after changes have been quiet for 5 minutes, pushes to the
offsite every hour unless the gate is closed, and answers the HTTPS API.
Run it again to resume where it stopped.

Without CUSTODY_PASSWORD (or --password-file, or a terminal), the first run
makes a random passphrase and keeps it in the data directory, readable by
you only: move it somewhere safer, and set CUSTODY_PASSWORD_FILE, when the
data matters.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := filepath.Abs(args[0])
			if err != nil {
				return usagef("protect: %v", err)
			}
			if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
				return usagef("protect: %s is not a directory", args[0])
			}
			if dataset == "" {
				dataset = filepath.Base(dir)
			}
			if err := checkDataset(dataset); err != nil {
				return err
			}
			cfg := config.Default()
			sched := config.DefaultSnapshot()
			if cmd.Flags().Changed("snapshot-every") {
				sched.Every = every
			}
			if cmd.Flags().Changed("snapshot-quiet") {
				sched.Quiet = quiet
			}
			cfg.Datasets = []config.Dataset{{Name: dataset, Path: dir, Snapshot: sched}}
			if offsiteURL != "" {
				f := g.s3WithEnv()
				cfg.Offsites = []config.Offsite{{Name: "offsite", URL: offsiteURL, Endpoint: f.endpoint, Region: f.region,
					InsecureTLS: f.insecure, Schedule: config.DefaultPushEvery}}
			}
			return g.runDaemon(cmd.Context(), cfg, df, true)
		},
	}
	df.add(cmd)
	cmd.Flags().StringVarP(&dataset, "dataset", "d", "", "the dataset's name (default: DIR's base name)")
	cmd.Flags().StringVar(&offsiteURL, "offsite", "", "also push to this S3 bucket (s3://bucket/prefix; versioning on; --s3-endpoint for other servers)")
	cmd.Flags().DurationVar(&every, "snapshot-every", time.Hour, "take a version this often (0: only after changes)")
	cmd.Flags().DurationVar(&quiet, "snapshot-quiet", 5*time.Minute, "take a version once changes have been quiet this long (0: never)")
	return cmd
}

func newServeCmd(g *globals) *cobra.Command {
	var df daemonFlags
	var path string
	cmd := &cobra.Command{
		Use:   "serve --config custody.yaml",
		Short: "Protect a whole pipeline's datasets as custody.yaml describes, with the API (foreground)",
		Long: `serve does for every dataset in custody.yaml what 'custody protect' does for
one directory: versions on each dataset's schedule and after quiet periods,
the watch and the guard with the file's policies, offsite pushes on each
offsite's schedule, and the HTTPS API with its rate limits. The vault must
exist ('custody init'); its passphrase comes from CUSTODY_PASSWORD or
CUSTODY_PASSWORD_FILE. The first start prints an admin token.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" {
				path = g.getenv("CUSTODY_CONFIG")
			}
			if path == "" {
				return usagef("serve: give --config custody.yaml (see 'custody config example')")
			}
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			if len(cfg.Datasets) == 0 {
				return usagef("serve: %s has no datasets", path)
			}
			return g.runDaemon(cmd.Context(), cfg, df, false)
		},
	}
	df.add(cmd)
	cmd.Flags().StringVar(&path, "config", "", "the configuration; env CUSTODY_CONFIG")
	return cmd
}

// runDaemon opens (with create, makes) the vault and runs the daemon
// over cfg's datasets until ctx ends.
func (g *globals) runDaemon(ctx context.Context, cfg *config.Config, df daemonFlags, create bool) error {
	data, err := g.dataDir()
	if err != nil {
		return err
	}
	// Flags win over the environment, the environment over the file.
	if g.vault == "" {
		g.vault = cfg.Vault
	}
	if g.vault == "" {
		g.vault = filepath.Join(data, "vault")
	}
	if err := checkOutsideDatasets(cfg.Datasets, data, g.vault); err != nil {
		return err
	}
	if err := os.MkdirAll(data, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if g.catalog == "" && g.getenv("CUSTODY_CATALOG") == "" {
		g.catalog = cfg.Catalog
	}
	if df.address != "" {
		cfg.Server.Address = df.address
	}
	passFile := ""
	if create {
		if passFile, err = g.protectPassphrase(ctx, data); err != nil {
			return err
		}
	}
	daemonGC()
	newSource := func(paths []string) (watch.Source, error) { return g.watchSource(df.backend, paths) }
	return g.withAudit(ctx, func(v *vault.Vault, rec *audit.Recorder, db *catalog.DB) error {
		secret, err := g.firstAdminToken(ctx, v, db)
		if err != nil {
			return err
		}
		ready := func(info daemon.ServeInfo) {
			w := g.stdout
			fmt.Fprintf(w, "custody is protecting %d dataset(s):\n", len(cfg.Datasets))
			for _, d := range cfg.Datasets {
				fmt.Fprintf(w, "  %-20s %s\n", d.Name, d.Path)
			}
			fmt.Fprintf(w, "vault:        %s\n", g.vault)
			if passFile != "" {
				fmt.Fprintf(w, "passphrase:   %s (made for you; move it somewhere safer and set CUSTODY_PASSWORD_FILE)\n", passFile)
			}
			fmt.Fprintf(w, "watching:     with %s\n", info.Watcher)
			fmt.Fprintf(w, "API:          %s/api/v1  (OpenAPI: %s/api/v1/openapi.json)\n", info.URL, info.URL)
			fmt.Fprintf(w, "certificate:  sha256 %s\n", info.Fingerprint)
			if info.CertFile != "" {
				fmt.Fprintf(w, "              %s (self-signed: clients pin the fingerprint or trust this file)\n", info.CertFile)
			}
			if secret != "" {
				fmt.Fprintf(w, "admin token:  %s\n              (shown once, kept only hashed; make others with 'custody token create')\n", secret)
			} else {
				fmt.Fprintln(w, "admin token:  shown when it was made; see 'custody token list', make another with 'custody token create'")
			}
			fmt.Fprintln(w, "Ctrl-C stops; run again to resume.")
			if !info.Attributes {
				fmt.Fprintln(g.stderr, "note: inotify cannot tell who made a change: incidents will have no principal and lock no one out (run as root for fanotify)")
			}
		}
		return daemon.Serve(ctx, v, rec, db, daemon.ServeOptions{Config: cfg, NewSource: newSource, StateDir: data, Logger: g.log, Ready: ready})
	})
}

// protectPassphrase makes sure protect has a vault and its passphrase: a
// new vault gets the passphrase from the environment, the terminal, or,
// failing both, a random one kept in the data directory. It returns that
// file's path when it is the one in use.
func (g *globals) protectPassphrase(ctx context.Context, data string) (string, error) {
	passFile := filepath.Join(data, "passphrase")
	haveEnv := g.getenv("CUSTODY_PASSWORD") != "" || g.passwordFile != ""
	if !haveEnv {
		if _, err := os.Stat(passFile); err == nil {
			g.passwordFile = passFile
		}
	}
	// The marker is the last file vault.Init writes: without it, the
	// vault is the leftover of an interrupted first start, made again.
	if _, err := os.Stat(filepath.Join(g.vault, "custody-vault")); err == nil || isRemote(g.vault) {
		if g.passwordFile == passFile {
			return passFile, nil
		}
		return "", nil
	}
	be, err := local.Create(g.vault)
	if err != nil {
		return "", err
	}
	defer be.Close()
	inUse := ""
	if !haveEnv && g.passwordFile == "" {
		b := make([]byte, 24)
		rand.Read(b)
		if err := writeFileAtomic(passFile, []byte(base64.RawURLEncoding.EncodeToString(b)+"\n")); err != nil {
			return "", fmt.Errorf("keep the passphrase: %w", err)
		}
		g.passwordFile = passFile
	}
	if g.passwordFile == passFile {
		inUse = passFile
	}
	pass, err := g.passphrase("", false)
	if err != nil {
		return "", err
	}
	if err := vault.Init(ctx, be, pass, vault.InitOptions{KDF: g.kdf}); err != nil {
		return "", err
	}
	v, err := vault.Open(ctx, be, pass, vault.Options{CacheDir: g.cacheDir, Logger: g.log})
	if err != nil {
		return "", err
	}
	defer v.Close()
	entry := ledger.Entry{Kind: "init", Path: be.Location(), Detail: map[string]string{"by": "protect"}}
	err = g.audited(ctx, v, &entry, nil)
	g.closeCatalog() // its recorder holds this vault, closed on return
	return inUse, err
}

// checkOutsideDatasets refuses a data directory or local vault inside
// a dataset: every version would hold the vault itself (and the
// passphrase and TLS key beside it), each one larger than the last, and
// the daemon's own writes would count as changes to snapshot.
func checkOutsideDatasets(datasets []config.Dataset, dirs ...string) error {
	for _, dir := range dirs {
		if isRemote(dir) {
			continue
		}
		abs, err := filepath.Abs(dir)
		if err != nil {
			return err
		}
		for _, d := range datasets {
			if rel, err := filepath.Rel(d.Path, abs); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
				return usagef("%s is inside dataset %s (%s): custody would back itself up; keep its data elsewhere (CUSTODY_DATA_DIR, --vault)", abs, d.Name, d.Path)
			}
		}
	}
	return nil
}

// daemonGC sets the daemon's garbage collection (unless GOGC is set):
// at 100% heap growth, between the snapshot commands' 50% (less memory)
// and the watcher's 400% (fewer collections under floods of events). The
// API's tail latency under load grows with the heap, since requests
// caught by a collection pay for it.
func daemonGC() {
	if os.Getenv("GOGC") == "" { // the runtime reads the process's own
		debug.SetGCPercent(100)
	}
}

func isRemote(location string) bool { return strings.Contains(location, "://") }

// writeFileAtomic writes a new owner-only file through a temporary one,
// so a crash leaves the old state or the new, never half a file.
func writeFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// adminTokenName is the token the daemon makes on its first start.
const adminTokenName = "admin"

// firstAdminToken makes the admin token when no active admin token
// exists, and returns its secret; "" when one exists.
func (g *globals) firstAdminToken(ctx context.Context, v *vault.Vault, db *catalog.DB) (string, error) {
	ts, err := db.Tokens(ctx, false)
	if err != nil {
		return "", err
	}
	for _, t := range ts {
		if t.Role == catalog.RoleAdmin {
			return "", nil
		}
	}
	secret, hash := auth.NewSecret()
	made, err := db.CreateToken(ctx, catalog.Token{Name: adminTokenName, Role: catalog.RoleAdmin, Created: time.Now().UTC(), CreatedBy: actorName()}, hash)
	e := ledger.Entry{Kind: "token.create", Detail: map[string]string{"name": adminTokenName, "role": catalog.RoleAdmin, "id": made.ID, "by": "first start"}}
	if err := g.audited(ctx, v, &e, err); err != nil {
		if errors.Is(err, catalog.ErrTokenExists) {
			return "", fmt.Errorf("a token named %q exists but is not an admin's: revoke it ('custody token revoke %s') and start again", adminTokenName, adminTokenName)
		}
		return "", err
	}
	return secret, nil
}
