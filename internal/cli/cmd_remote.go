package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/guard"
	"github.com/custodyhq/custody/internal/ledger"
	"github.com/custodyhq/custody/internal/server/client"
)

// remoteFlags reach a running daemon instead of the vault: the read
// commands and incident handling then need a token, not the passphrase.
// The token comes from CUSTODY_TOKEN or a file, never from argv, where
// every user of the machine could read it.
type remoteFlags struct {
	server, tokenFile, fingerprint, caFile string
}

// remote returns a client when --server (or CUSTODY_SERVER) is set, nil
// otherwise.
func (g *globals) remote() (*client.Client, error) {
	f := g.remoteFlags
	if f.server == "" {
		f.server = g.getenv("CUSTODY_SERVER")
	}
	if f.server == "" {
		return nil, nil
	}
	token := g.getenv("CUSTODY_TOKEN")
	if f.tokenFile == "" {
		f.tokenFile = g.getenv("CUSTODY_TOKEN_FILE")
	}
	if f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("read the token file: %w", err)
		}
		token = string(bytes.TrimSpace(b))
	}
	if f.fingerprint == "" {
		f.fingerprint = g.getenv("CUSTODY_SERVER_FINGERPRINT")
	}
	if f.caFile == "" {
		f.caFile = g.getenv("CUSTODY_SERVER_CA")
	}
	c, err := client.New(f.server, token, client.Options{Fingerprint: f.fingerprint, CAFile: f.caFile})
	if err != nil {
		return nil, usageError{err}
	}
	return c, nil
}

// printRaw prints a server's JSON answer as it came, indented.
func (g *globals) printRaw(raw json.RawMessage) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err := g.stdout.Write(buf.Bytes())
	return err
}

// remoteLog is `custody log` against a server: one dataset's versions, or
// every dataset's.
func (g *globals) remoteLog(ctx context.Context, c *client.Client, dataset string) error {
	var names []string
	if dataset != "" {
		names = []string{dataset}
	} else {
		var ds struct{ Datasets []struct{ Name string } }
		if err := c.Get(ctx, "/api/v1/datasets", nil, &ds); err != nil {
			return err
		}
		for _, d := range ds.Datasets {
			names = append(names, d.Name)
		}
	}
	type version struct {
		ID      string    `json:"id"`
		Dataset string    `json:"dataset"`
		Time    time.Time `json:"time"`
		Files   uint64    `json:"files"`
		Bytes   uint64    `json:"bytes"`
		Message string    `json:"message"`
	}
	var all []json.RawMessage
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	if !g.json {
		fmt.Fprintln(tw, "VERSION\tDATASET\tTIME\tFILES\tSIZE\tMESSAGE")
	}
	for _, n := range names {
		var vs struct{ Versions []json.RawMessage }
		if err := c.Get(ctx, "/api/v1/datasets/"+url.PathEscape(n)+"/versions", url.Values{"limit": {"1000"}}, &vs); err != nil {
			return err
		}
		all = append(all, vs.Versions...)
		for _, raw := range vs.Versions {
			var v version
			json.Unmarshal(raw, &v)
			if !g.json {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", v.ID[:min(12, len(v.ID))], v.Dataset, v.Time.Local().Format(time.DateTime), v.Files, humanBytes(v.Bytes), strings.ReplaceAll(v.Message, "\n", " "))
			}
		}
	}
	if g.json {
		return printJSON(g.stdout, all)
	}
	return tw.Flush()
}

// remoteLs is `custody ls` against a server.
func (g *globals) remoteLs(ctx context.Context, c *client.Client, version, sub, dataset string) error {
	q := url.Values{"limit": {"100000"}}
	if sub != "" {
		q.Set("path", sub)
	}
	if dataset != "" {
		q.Set("dataset", dataset)
	}
	var resp struct {
		Files []struct {
			Path  string `json:"path"`
			Type  string `json:"type"`
			Size  uint64 `json:"size"`
			MTime string `json:"mtime"`
			User  string `json:"user"`
			UID   uint32 `json:"uid"`
		}
		Truncated bool
	}
	var raw json.RawMessage
	if err := c.Get(ctx, "/api/v1/versions/"+url.PathEscape(version)+"/files", q, &raw); err != nil {
		return err
	}
	if g.json {
		return g.printRaw(raw)
	}
	if err := json.Unmarshal(raw, &resp); err != nil {
		return err
	}
	for _, f := range resp.Files {
		owner := f.User
		if owner == "" {
			owner = strconv.FormatUint(uint64(f.UID), 10)
		}
		fmt.Fprintf(g.stdout, "%-8s %-8s %12d %s %s\n", f.Type, owner, f.Size, f.MTime, f.Path)
	}
	if resp.Truncated {
		fmt.Fprintln(g.stderr, "(the list was cut at 100,000 entries: give a sub-path)")
	}
	return nil
}

// remoteDiff is `custody diff` against a server.
func (g *globals) remoteDiff(ctx context.Context, c *client.Client, a, b string) error {
	var raw json.RawMessage
	if err := c.Get(ctx, "/api/v1/diff", url.Values{"from": {a}, "to": {b}}, &raw); err != nil {
		return err
	}
	if g.json {
		return g.printRaw(raw)
	}
	type change struct {
		Path string   `json:"path"`
		What []string `json:"what"`
	}
	var d struct{ Added, Removed, Modified []change }
	if err := json.Unmarshal(raw, &d); err != nil {
		return err
	}
	for _, ch := range d.Added {
		fmt.Fprintf(g.stdout, "+ %s\n", ch.Path)
	}
	for _, ch := range d.Removed {
		fmt.Fprintf(g.stdout, "- %s\n", ch.Path)
	}
	for _, ch := range d.Modified {
		fmt.Fprintf(g.stdout, "M %s (%s)\n", ch.Path, strings.Join(ch.What, ", "))
	}
	fmt.Fprintf(g.stdout, "%d added, %d removed, %d modified\n", len(d.Added), len(d.Removed), len(d.Modified))
	return nil
}

// remoteAuditLog is `custody audit log` against a server, page by page.
func (g *globals) remoteAuditLog(ctx context.Context, c *client.Client, f auditFilter) error {
	q := url.Values{"limit": {"1000"}}
	for k, v := range map[string]string{"dataset": f.dataset, "path": f.path, "user": f.user, "kind": f.kind, "since": f.since, "until": f.until} {
		if v != "" {
			q.Set(k, v)
		}
	}
	type row struct {
		Index int64 `json:"index"`
		*ledger.Entry
	}
	rows := []row{}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	if !g.json {
		fmt.Fprintln(tw, "INDEX\tTIME\tKIND\tUSER\tDATASET\tPATH\tOUTCOME")
	}
	for {
		var page struct {
			Entries []struct {
				Index int64           `json:"index"`
				Entry json.RawMessage `json:"entry"`
			}
			Next *int64
		}
		if err := c.Get(ctx, "/api/v1/audit", q, &page); err != nil {
			return err
		}
		for _, h := range page.Entries {
			e, err := ledger.ParseLeaf(h.Entry)
			if err != nil {
				return fmt.Errorf("audit entry %d from the server: %w", h.Index, err)
			}
			if g.json {
				rows = append(rows, row{h.Index, e})
				continue
			}
			who := e.Actor.User
			if who == "" && e.Actor.Token != "" {
				who = "token:" + e.Actor.Token
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Index, e.Time.Local().Format(time.DateTime), e.Kind, who, e.Dataset, displayPath(e.Path), e.Outcome)
		}
		if page.Next == nil {
			break
		}
		q.Set("after", strconv.FormatInt(*page.Next, 10))
	}
	if g.json {
		return printJSON(g.stdout, rows)
	}
	return tw.Flush()
}

// remoteIncidents lists incidents through a server.
func (g *globals) remoteIncidents(ctx context.Context, c *client.Client) error {
	var raw json.RawMessage
	if err := c.Get(ctx, "/api/v1/incidents", nil, &raw); err != nil {
		return err
	}
	var resp struct{ Incidents []catalog.Incident }
	if err := json.Unmarshal(raw, &resp); err != nil {
		return err
	}
	if g.json {
		return printJSON(g.stdout, resp.Incidents)
	}
	if len(resp.Incidents) == 0 {
		fmt.Fprintln(g.stdout, "no incidents")
		return nil
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tOPENED\tSTATE\tSEVERITY\tPRINCIPAL\tDATASETS")
	for _, in := range resp.Incidents {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", in.ID, in.Opened.Local().Format(time.DateTime), in.State, in.Severity, guard.PrincipalLabel(in.UID, in.User), strings.Join(in.Datasets, ","))
	}
	return tw.Flush()
}

// remoteIncidentStep shows an incident or moves it through a server:
// step is "" (show), "contain", "recover" or "false-positive".
func (g *globals) remoteIncidentStep(ctx context.Context, c *client.Client, arg, step string, body any) error {
	id, err := parseIncidentID(arg)
	if err != nil {
		return err
	}
	path := "/api/v1/incidents/" + strconv.FormatInt(id, 10)
	var raw json.RawMessage
	if step == "" {
		err = c.Get(ctx, path, nil, &raw)
	} else {
		err = c.Post(ctx, path+"/"+step, body, &raw)
	}
	if err != nil {
		return err
	}
	if !g.json && step != "" {
		fmt.Fprintf(g.stdout, "incident %d: %s done through the server\n", id, step)
		return nil
	}
	return g.printRaw(raw)
}

// remoteLockouts lists lockouts, or releases one (uid != ""), through a
// server.
func (g *globals) remoteLockouts(ctx context.Context, c *client.Client, release string) error {
	if release != "" {
		if _, err := strconv.ParseUint(release, 10, 32); err != nil {
			return usagef("lockouts release: through a server, give the numeric uid (see 'custody lockouts list')")
		}
		var raw json.RawMessage
		if err := c.Delete(ctx, "/api/v1/lockouts/"+release, &raw); err != nil {
			return err
		}
		if g.json {
			return g.printRaw(raw)
		}
		fmt.Fprintf(g.stdout, "uid %s released; the gate stays closed until 'custody gate open'\n", release)
		return nil
	}
	var resp struct{ Lockouts []catalog.Lockout }
	if err := c.Get(ctx, "/api/v1/lockouts", nil, &resp); err != nil {
		return err
	}
	if g.json {
		return printJSON(g.stdout, resp.Lockouts)
	}
	if len(resp.Lockouts) == 0 {
		fmt.Fprintln(g.stdout, "no lockouts")
		return nil
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "UID\tUSER\tINCIDENT\tSINCE\tBY")
	for _, l := range resp.Lockouts {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\n", l.UID, l.User, l.Incident, l.Since.Local().Format(time.DateTime), l.By)
	}
	return tw.Flush()
}

// remoteOffsiteStatus is `custody offsite status` through a server.
func (g *globals) remoteOffsiteStatus(ctx context.Context, c *client.Client) error {
	var raw json.RawMessage
	if err := c.Get(ctx, "/api/v1/offsites", nil, &raw); err != nil {
		return err
	}
	return g.printRaw(raw)
}
