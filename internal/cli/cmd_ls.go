package cli

import (
	"encoding/base64"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/custodyhq/custody/internal/snapshot"
)

// splitTarget splits "VERSION[:sub/path]".
func splitTarget(arg string) (version, sub string) {
	version, sub, _ = strings.Cut(arg, ":")
	return version, strings.Trim(sub, "/")
}

func newLsCmd(g *globals) *cobra.Command {
	var dataset string
	cmd := &cobra.Command{
		Use:   "ls VERSION[:sub/path]",
		Short: "List the files of a version",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if c, err := g.remote(); c != nil || err != nil {
				if err != nil {
					return err
				}
				prefix, sub := splitTarget(args[0])
				return g.remoteLs(ctx, c, prefix, sub, dataset)
			}
			v, err := g.openVault(ctx)
			if err != nil {
				return err
			}
			defer closeVault(v)
			prefix, sub := splitTarget(args[0])
			ver, err := v.ResolveVersion(ctx, prefix, dataset)
			if err != nil {
				return err
			}
			type entry struct {
				jsonPath
				Type      snapshot.NodeType `json:"type"`
				Mode      string            `json:"mode"`
				Size      uint64            `json:"size"`
				MTime     time.Time         `json:"mtime"`
				UID       uint32            `json:"uid"`
				GID       uint32            `json:"gid"`
				User      string            `json:"user,omitempty"`
				Group     string            `json:"group,omitempty"`
				Target    string            `json:"target,omitempty"`
				TargetRaw string            `json:"target_raw,omitempty"` // base64, when the target is not valid UTF-8
			}
			var entries []entry
			err = snapshot.Walk(ctx, v, ver.Tree, sub, func(path string, n *snapshot.Node) error {
				e := entry{jsonPath: newJSONPath(path), Type: n.Type, Mode: modeString(n), Size: n.Size, MTime: time.Unix(0, n.ModTime).UTC(),
					UID: n.UID, GID: n.GID, User: n.User, Group: n.Group, Target: string(n.RawLinkTarget())}
				if t := n.RawLinkTarget(); len(t) > 0 && !utf8.Valid(t) {
					e.Target, e.TargetRaw = strconv.Quote(string(t)), base64.StdEncoding.EncodeToString(t)
				}
				if g.json {
					entries = append(entries, e)
					return nil
				}
				name := displayPath(path)
				if n.Type == snapshot.TypeSymlink {
					name += " -> " + displayPath(string(n.RawLinkTarget()))
				}
				owner := n.User
				if owner == "" {
					owner = fmt.Sprint(n.UID)
				}
				_, err := fmt.Fprintf(g.stdout, "%s %-8s %12d %s %s\n", e.Mode, owner, n.Size, time.Unix(0, n.ModTime).Local().Format("2006-01-02 15:04:05"), name)
				return err
			})
			if err != nil {
				return err
			}
			if g.json {
				if entries == nil {
					entries = []entry{}
				}
				return printJSON(g.stdout, entries)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&dataset, "dataset", "d", "", "with VERSION 'latest': the newest version of this dataset")
	return cmd
}

func modeString(n *snapshot.Node) string {
	m := fs.FileMode(n.Mode & 0o777)
	if n.Mode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if n.Mode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if n.Mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	switch n.Type {
	case snapshot.TypeDir:
		m |= fs.ModeDir
	case snapshot.TypeSymlink:
		m |= fs.ModeSymlink
	}
	return m.String()
}
