package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
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
	if dsn := os.Getenv("CUSTODY_CATALOG"); dsn != "" {
		return dsn
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
	rec, _, err := g.recorder(rctx, v)
	if err == nil {
		_, err = rec.Record(rctx, *e)
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
