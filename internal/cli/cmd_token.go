package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/custodyhq/custody/internal/audit"
	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/ledger"
	"github.com/custodyhq/custody/internal/server/auth"
	"github.com/custodyhq/custody/internal/vault"
)

func newTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token create --role ROLE --name NAME [--uid UID|USER] [--expires 90d] | list | revoke ID|NAME",
		Short: "API bearer tokens: create (the secret is shown once), list, revoke",
	}
	var role, name, expires, owner string
	var stages []string
	create := &cobra.Command{
		Use:   "create --role admin|operator|data-scientist|auditor --name NAME [--uid UID|USER] [--expires 90d] [--stage S]...",
		Short: "Create a token and print its secret once; only its hash is kept",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.createToken(cmd.Context(), name, role, expires, owner, stages)
		},
	}
	create.Flags().StringVar(&role, "role", "", "admin, operator, data-scientist or auditor")
	create.Flags().StringVar(&name, "name", "", "a name for the token, unique among active tokens")
	create.Flags().StringVar(&expires, "expires", "90d", "how long it lives (90d, 12h; \"never\" for no expiry)")
	create.Flags().StringArrayVar(&stages, "stage", nil, "data-scientist only: a pipeline stage it may read (repeatable)")
	create.Flags().StringVar(&owner, "uid", "", "the OS user the token acts for (a uid or user name); locking that user out suspends the token")
	var all bool
	list := &cobra.Command{
		Use:   "list [--all]",
		Short: "List active tokens (--all: revoked and expired too); never their secrets",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return g.listTokens(cmd.Context(), all) },
	}
	list.Flags().BoolVar(&all, "all", false, "include revoked and expired tokens")
	revoke := &cobra.Command{
		Use:   "revoke ID|NAME",
		Short: "Revoke a token: it stops working at once",
		Args:  cobra.ExactArgs(1),
		RunE:  func(cmd *cobra.Command, args []string) error { return g.revokeToken(cmd.Context(), args[0]) },
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

func (g *globals) createToken(ctx context.Context, name, role, expires, owner string, stages []string) error {
	if name == "" || role == "" {
		return usagef("token create: give --name and --role (%s)", strings.Join(catalog.Roles, ", "))
	}
	var uid *uint32
	if owner != "" {
		u, ok := lookUpUID(owner)
		if !ok {
			return usagef("token create: --uid: %q is neither a uid nor a known user", owner)
		}
		uid = &u
	}
	var life time.Duration
	if expires != "never" {
		var err error
		if life, err = auth.ParseExpiry(expires); err != nil {
			return usagef("token create: --expires: %v", err)
		}
	}
	return g.withAudit(ctx, func(v *vault.Vault, _ *audit.Recorder, db *catalog.DB) error {
		secret, hash := auth.NewSecret()
		now := time.Now().UTC()
		t := catalog.Token{Name: name, Role: role, Stages: stages, UID: uid, Created: now, CreatedBy: audit.Self().User}
		if life > 0 {
			t.Expires = now.Add(life)
		}
		made, err := db.CreateToken(ctx, t, hash)
		e := ledger.Entry{Kind: "token.create", Detail: map[string]string{"name": name, "role": role, "id": made.ID}}
		if uid != nil {
			e.Detail["uid"] = strconv.FormatUint(uint64(*uid), 10)
		}
		if err := g.audited(ctx, v, &e, err); err != nil {
			if errors.Is(err, catalog.ErrTokenExists) {
				return fmt.Errorf("a token named %q is already active: revoke it or choose another name", name)
			}
			return err
		}
		if g.json {
			return printJSON(g.stdout, map[string]any{"id": made.ID, "name": made.Name, "role": made.Role, "uid": made.UID, "expires": made.Expires, "secret": secret})
		}
		fmt.Fprintf(g.stdout, "%s\n", secret)
		owner := ""
		if made.UID != nil {
			owner = " for uid " + strconv.FormatUint(uint64(*made.UID), 10)
		}
		fmt.Fprintf(g.stderr, "token %s (%s, %s) created%s; the secret above is shown once and kept only hashed\n", made.ID, made.Name, made.Role, owner)
		return nil
	})
}

func (g *globals) listTokens(ctx context.Context, all bool) error {
	return g.withAudit(ctx, func(_ *vault.Vault, _ *audit.Recorder, db *catalog.DB) error {
		ts, err := db.Tokens(ctx, all)
		if err != nil {
			return err
		}
		if g.json {
			return printJSON(g.stdout, ts)
		}
		if len(ts) == 0 {
			fmt.Fprintln(g.stdout, "no tokens")
			return nil
		}
		tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tROLE\tUID\tSTAGES\tCREATED\tEXPIRES\tSTATE")
		now := time.Now()
		for _, t := range ts {
			state := "active"
			switch {
			case !t.Revoked.IsZero():
				state = "revoked"
			case !t.Expires.IsZero() && !now.Before(t.Expires):
				state = "expired"
			case !t.Suspended.IsZero():
				state = "suspended"
			}
			exp := "never"
			if !t.Expires.IsZero() {
				exp = t.Expires.Local().Format(time.DateTime)
			}
			uid := "-"
			if t.UID != nil {
				uid = strconv.FormatUint(uint64(*t.UID), 10)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Role, uid, strings.Join(t.Stages, ","),
				t.Created.Local().Format(time.DateTime), exp, state)
		}
		return tw.Flush()
	})
}

func (g *globals) revokeToken(ctx context.Context, which string) error {
	return g.withAudit(ctx, func(v *vault.Vault, _ *audit.Recorder, db *catalog.DB) error {
		t, err := db.RevokeToken(ctx, which, time.Now().UTC())
		if errors.Is(err, catalog.ErrNoToken) {
			err = fmt.Errorf("no active token %q (see 'custody token list')", which)
		}
		e := ledger.Entry{Kind: "token.revoke", Detail: map[string]string{"token": which, "id": t.ID}}
		if err := g.audited(ctx, v, &e, err); err != nil {
			return err
		}
		fmt.Fprintf(g.stdout, "token %s (%s) revoked\n", t.ID, t.Name)
		return nil
	})
}
