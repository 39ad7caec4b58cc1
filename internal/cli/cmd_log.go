package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/custodyhq/custody/internal/vault"
)

type versionJSON struct {
	Version  string    `json:"version"`
	Dataset  string    `json:"dataset"`
	Stage    string    `json:"stage,omitempty"`
	Time     time.Time `json:"time"`
	StoredAt time.Time `json:"stored_at"`
	Parent   *string   `json:"parent"`
	Message  string    `json:"message"`
	Host     string    `json:"host,omitempty"`
	User     string    `json:"user,omitempty"`
	Source   string    `json:"source,omitempty"`
	Tree     string    `json:"tree"`
	Files    uint64    `json:"files"`
	Bytes    uint64    `json:"bytes"`
	NewBytes uint64    `json:"new_bytes"`
	Stored   uint64    `json:"stored_bytes"`
	Skipped  []string  `json:"skipped,omitempty"`
	Changed  []string  `json:"changed_while_read,omitempty"`
}

func toVersionJSON(v *vault.Version) versionJSON {
	j := versionJSON{
		Version: v.ID.String(), Dataset: v.Dataset, Stage: v.Stage, Time: v.Time, StoredAt: v.StoredAt.UTC(), Message: v.Message,
		Host: v.Host, User: v.User, Source: v.Source, Tree: v.Tree.String(), Files: v.Files, Bytes: v.Bytes,
		NewBytes: v.NewBytes, Stored: v.Stored, Skipped: v.Skipped, Changed: v.Changed,
	}
	if v.Parent != nil {
		p := v.Parent.String()
		j.Parent = &p
	}
	return j
}

func newLogCmd(g *globals) *cobra.Command {
	var dataset string
	cmd := &cobra.Command{
		Use:   "log",
		Short: "List versions, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if c, err := g.remote(); c != nil || err != nil {
				if err != nil {
					return err
				}
				return g.remoteLog(cmd.Context(), c, dataset)
			}
			v, err := g.openVault(cmd.Context())
			if err != nil {
				return err
			}
			defer closeVault(v)
			all, _, err := v.ReadableVersions(cmd.Context()) // unreadable ones are warned about on stderr
			if err != nil {
				return err
			}
			out := []versionJSON{}
			for _, ver := range all {
				if dataset == "" || ver.Dataset == dataset {
					out = append(out, toVersionJSON(ver))
				}
			}
			if g.json {
				return printJSON(g.stdout, out)
			}
			if len(out) == 0 {
				fmt.Fprintln(g.stdout, "no versions")
				return nil
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VERSION\tDATASET\tTIME\tFILES\tSIZE\tMESSAGE")
			for _, j := range out {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", j.Version[:12], j.Dataset, j.Time.Local().Format("2006-01-02 15:04:05"), j.Files, humanBytes(j.Bytes), strings.ReplaceAll(j.Message, "\n", " "))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&dataset, "dataset", "d", "", "only this dataset")
	return cmd
}
