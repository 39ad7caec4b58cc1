package report

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteText writes the report as tables for a terminal.
func (rep *Custody) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "chain of custody: %s (generated %s)\n", rep.Subject, rep.Generated.Local().Format("2006-01-02 15:04:05"))
	for _, p := range rep.Periods {
		fmt.Fprintln(w)
		if p.Version != nil {
			v := p.Version
			stage := ""
			if v.Stage != "" {
				stage = ", stage " + v.Stage
			}
			fmt.Fprintf(w, "version %s of %s at %s by %s%s: %d files, %d bytes %q\n", v.ID[:12], v.Dataset, v.Time.Local().Format("2006-01-02 15:04:05"), v.User, stage, v.Files, v.Bytes, v.Message)
			fmt.Fprintln(w, "  changes before it:")
		} else {
			fmt.Fprintf(w, "since the newest version (not in any version yet):\n")
		}
		if len(p.People) == 0 {
			fmt.Fprintln(w, "    none recorded")
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "    WHO\tUID\tEVENTS\tKINDS\tPROCESSES\tFIRST\tLAST")
		for _, ps := range p.People {
			uid := "-"
			if ps.UID != nil {
				uid = fmt.Sprint(*ps.UID)
			}
			var procs []string
			for _, e := range ps.Processes {
				procs = append(procs, filepath.Base(e))
			}
			fmt.Fprintf(tw, "    %s\t%s\t%d\t%s\t%s\t%s\t%s\n", ps.User, uid, ps.Events, kinds(ps.Kinds), strings.Join(procs, ","),
				ps.First.Local().Format("01-02 15:04:05"), ps.Last.Local().Format("01-02 15:04:05"))
		}
		tw.Flush()
	}
	if rep.Unattributed > 0 {
		fmt.Fprintf(w, "\n%d events have no known principal (inotify, rescans after lost events, or processes gone before lookup)\n", rep.Unattributed)
	}
	return nil
}

func kinds(m map[string]int) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	var out []string
	for _, k := range ks {
		out = append(out, fmt.Sprintf("%s %d", strings.TrimPrefix(k, "file."), m[k]))
	}
	return strings.Join(out, ", ")
}

//go:embed custody.html
var htmlSource string

var page = template.Must(template.New("custody").Funcs(template.FuncMap{
	"when":  func(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05") },
	"kinds": kinds,
	"short": func(s string) string { return s[:min(12, len(s))] },
}).Parse(htmlSource))

// WriteHTML writes the report as one self-contained HTML page: no
// scripts, no external styles or fonts; every value is escaped.
func (rep *Custody) WriteHTML(w io.Writer) error {
	return page.Execute(w, rep)
}
