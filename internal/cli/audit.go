package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/custodyhq/custody/internal/audit"
	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/ledger"
	"github.com/custodyhq/custody/internal/vault"
)

// catalogDSN is where the catalog is: --catalog, CUSTODY_CATALOG, or a
// SQLite file inside a local vault's directory.
func (g *globals) catalogDSN() string {
	if g.catalog != "" {
		return g.catalog
	}
	if dsn := g.getenv("CUSTODY_CATALOG"); dsn != "" {
		return dsn
	}
	if strings.Contains(g.vault, "://") {
		// A vault in a bucket: a catalog of this machine's, named for it
		// (share one with --catalog postgres://... across hosts).
		dir := g.getenv("XDG_DATA_HOME")
		if home, err := os.UserHomeDir(); dir == "" && err == nil {
			dir = filepath.Join(home, ".local", "share")
		}
		sum := sha256.Sum256([]byte(g.vault + "\x00" + g.s3WithEnv().endpoint))
		dir = filepath.Join(dir, "custody")
		os.MkdirAll(dir, 0o700)
		return filepath.Join(dir, "catalog-"+hex.EncodeToString(sum[:8])+".db")
	}
	return filepath.Join(g.vault, "catalog.db")
}

// recorder opens the catalog and the vault's ledger recorder once per command.
func (g *globals) recorder(ctx context.Context, v *vault.Vault) (*audit.Recorder, *catalog.DB, error) {
	if g.rec != nil {
		return g.rec, g.db, nil
	}
	db, err := catalog.Open(ctx, g.catalogDSN())
	if err != nil {
		return nil, nil, fmt.Errorf("open the catalog: %w", err)
	}
	rec, err := audit.New(v, db)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	g.rec, g.db = rec, db
	return rec, db, nil
}

func (g *globals) closeCatalog() {
	if g.db != nil {
		g.db.Close()
		g.db, g.rec = nil, nil
	}
}

// audited appends e, with this process as the actor and cmdErr's outcome,
// to the ledger. A command that changed the vault but could not record it
// fails: an action missing from the audit trail is not a success.
func (g *globals) audited(ctx context.Context, v *vault.Vault, e *ledger.Entry, cmdErr error) error {
	e.Time = time.Now().UTC()
	e.Actor = audit.Self()
	e.Outcome = audit.Outcome(cmdErr)
	// Record even when the command's context was cancelled (Ctrl-C).
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	rec, db, err := g.recorder(rctx, v)
	if err == nil {
		_, err = rec.Record(rctx, *e)
	}
	if err == nil {
		g.updateIndex(rctx, db, e)
	}
	if err != nil {
		if cmdErr != nil {
			g.log.Warn("audit entry not recorded", "err", err)
			return cmdErr
		}
		return fmt.Errorf("%s succeeded but was not recorded in the audit ledger: %w", e.Kind, err)
	}
	return cmdErr
}

// indexVersion queues a version for the catalog's index, written with the
// command's audit entry.
func (g *globals) indexVersion(v *vault.Version) {
	g.indexPut = append(g.indexPut, catalog.VersionOf(v))
}

// unindexVersion queues a forgotten version's removal from the index.
func (g *globals) unindexVersion(id vault.ID) { g.indexDel = append(g.indexDel, id.String()) }

// updateIndex writes the queued index changes and the actor's principal
// row. The index is derived from the vault (`custody catalog sync`
// rebuilds it), so failing to update it is a warning, not a failure.
func (g *globals) updateIndex(ctx context.Context, db *catalog.DB, e *ledger.Entry) {
	var errs []error
	for _, v := range g.indexPut {
		errs = append(errs, db.PutVersion(ctx, v))
	}
	for _, id := range g.indexDel {
		errs = append(errs, db.DeleteVersion(ctx, id))
	}
	g.indexPut, g.indexDel = nil, nil
	if e.Actor.User != "" {
		errs = append(errs, db.TouchPrincipal(ctx, catalog.Principal{Kind: "os", Name: e.Actor.User, UID: e.Actor.UID}, e.Time))
	}
	if err := errors.Join(errs...); err != nil {
		g.log.Warn("catalog index not updated; run `custody catalog sync`", "err", err)
	}
}

// checkGate refuses a destructive step while the zero-trust gate is closed
// for any of datasets (none: for any dataset).
func (g *globals) checkGate(ctx context.Context, v *vault.Vault, step string, datasets ...string) error {
	_, db, err := g.recorder(ctx, v)
	if err != nil {
		return err
	}
	return db.CheckGate(ctx, step, datasets...)
}
