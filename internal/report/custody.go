// Package report builds chain-of-custody reports from the vault's versions
// and the audit ledger: for a dataset or a path, every version and who
// changed what between them, when, with which process, at which stage.
package report

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/ledger"
	"github.com/custodyhq/custody/internal/vault"
)

// Custody is the report.
type Custody struct {
	Subject   string    `json:"subject"` // the dataset or path asked about
	Dataset   string    `json:"dataset,omitempty"`
	Path      string    `json:"path,omitempty"`
	Since     time.Time `json:"since,omitzero"`
	Generated time.Time `json:"generated"`
	// Periods run from one version to the next, oldest first; the last
	// one holds the changes since the newest version (not in any version yet).
	Periods []Period `json:"periods"`
	// Unattributed counts events whose principal is unknown (inotify,
	// rescans after an overflow, processes gone before lookup).
	Unattributed int `json:"unattributed_events"`
}

// Period is the changes that led to a version (or, for the last, that no
// version holds yet).
type Period struct {
	Version *VersionInfo `json:"version,omitempty"` // nil: since the newest version
	From    time.Time    `json:"from,omitzero"`
	Until   time.Time    `json:"until,omitzero"`
	People  []Person     `json:"people"`
}

// VersionInfo is what the report shows of a version.
type VersionInfo struct {
	ID      string    `json:"id"`
	Dataset string    `json:"dataset"`
	Stage   string    `json:"stage,omitempty"`
	Time    time.Time `json:"time"`
	User    string    `json:"user,omitempty"`
	Message string    `json:"message,omitempty"`
	Files   uint64    `json:"files"`
	Bytes   uint64    `json:"bytes"`
}

// Person is one principal's changes in a period.
type Person struct {
	User      string         `json:"user"` // "unknown" when not attributed
	UID       *uint32        `json:"uid,omitempty"`
	Processes []string       `json:"processes"` // executables, sorted
	Kinds     map[string]int `json:"kinds"`     // file.modify → count
	Paths     []string       `json:"paths"`     // changed paths, sorted, at most MaxPaths
	MorePaths int            `json:"more_paths,omitempty"`
	First     time.Time      `json:"first"`
	Last      time.Time      `json:"last"`
	Events    int            `json:"events"`

	seen map[string]bool
}

// MaxPaths bounds the paths listed per person and period.
const MaxPaths = 50

// Options select what the report covers.
type Options struct {
	Dataset string // or
	Path    string // a path: the versions of the dataset whose source holds it, and events under it
	Since   time.Time
	Now     time.Time
}

// Build makes the report from the vault's readable versions and the
// ledger's entries in db.
func Build(ctx context.Context, v *vault.Vault, db *catalog.DB, opts Options) (*Custody, error) {
	if (opts.Dataset == "") == (opts.Path == "") {
		return nil, fmt.Errorf("report: give a dataset or a path")
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	rep := &Custody{Subject: opts.Dataset + opts.Path, Dataset: opts.Dataset, Path: opts.Path, Since: opts.Since, Generated: opts.Now.UTC()}
	vers, _, err := v.ReadableVersions(ctx)
	if err != nil {
		return nil, err
	}
	var mine []*vault.Version
	for _, ver := range vers {
		if opts.Dataset != "" && ver.Dataset == opts.Dataset || opts.Path != "" && under(opts.Path, ver.Source) {
			if ver.Time.Before(opts.Since) {
				continue
			}
			mine = append(mine, ver)
		}
	}
	slices.SortFunc(mine, func(a, b *vault.Version) int { return a.Time.Compare(b.Time) })

	// Periods: (since, v1], (v1, v2], ..., (vn, now].
	from := opts.Since
	for _, ver := range mine {
		rep.Periods = append(rep.Periods, Period{Version: &VersionInfo{ID: ver.ID.String(), Dataset: ver.Dataset, Stage: ver.Stage, Time: ver.Time, User: ver.User,
			Message: ver.Message, Files: ver.Files, Bytes: ver.Bytes}, From: from, Until: ver.Time})
		from = ver.Time
	}
	rep.Periods = append(rep.Periods, Period{From: from, Until: opts.Now.UTC()})

	people := make([]map[string]*Person, len(rep.Periods))
	for i := range people {
		people[i] = map[string]*Person{}
	}
	q := catalog.Query{Dataset: opts.Dataset, Path: opts.Path, Since: opts.Since, After: -1, Limit: 5000}
	for {
		hits, err := db.Search(ctx, q)
		if err != nil {
			return nil, err
		}
		for _, h := range hits {
			e, err := ledger.ParseLeaf(h.Record)
			if err != nil || !strings.HasPrefix(e.Kind, "file.") {
				continue // verification judges records; the report shows file changes
			}
			i := period(rep.Periods, e.Time)
			rep.add(people[i], e)
		}
		if len(hits) < q.Limit {
			break
		}
		q.After = hits[len(hits)-1].Index
	}
	for i := range rep.Periods {
		for _, p := range people[i] {
			slices.Sort(p.Processes)
			slices.Sort(p.Paths)
			rep.Periods[i].People = append(rep.Periods[i].People, *p)
		}
		slices.SortFunc(rep.Periods[i].People, func(a, b Person) int { return strings.Compare(a.User, b.User) })
	}
	return rep, nil
}

// under reports whether path is dir or inside it.
func under(path, dir string) bool {
	if dir == "" {
		return false
	}
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// period is the index of the period holding t: the first whose Until is
// not before t.
func period(ps []Period, t time.Time) int {
	for i, p := range ps {
		if !t.After(p.Until) {
			return i
		}
	}
	return len(ps) - 1
}

func (rep *Custody) add(people map[string]*Person, e *ledger.Entry) {
	name := e.Actor.User
	if e.Actor.UID == nil {
		name = "unknown"
		rep.Unattributed++
	} else if name == "" {
		name = fmt.Sprintf("uid %d", *e.Actor.UID)
	}
	p := people[name]
	if p == nil {
		p = &Person{User: name, UID: e.Actor.UID, Kinds: map[string]int{}, First: e.Time, seen: map[string]bool{}}
		people[name] = p
	}
	n := 1
	if c := e.Detail["count"]; c != "" {
		fmt.Sscan(c, &n)
	}
	p.Events += n
	p.Kinds[e.Kind] += n
	if e.Time.Before(p.First) {
		p.First = e.Time
	}
	if e.Time.After(p.Last) {
		p.Last = e.Time
	}
	if e.Actor.Exe != "" && !slices.Contains(p.Processes, e.Actor.Exe) {
		p.Processes = append(p.Processes, e.Actor.Exe)
	}
	if !p.seen[e.Path] {
		p.seen[e.Path] = true
		if len(p.Paths) < MaxPaths {
			p.Paths = append(p.Paths, e.Path)
		} else {
			p.MorePaths++
		}
	}
}
