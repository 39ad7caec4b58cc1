package server

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/ledger"
	"github.com/custodyhq/custody/internal/snapshot"
	"github.com/custodyhq/custody/internal/vault"
)

// apiDataset is a dataset in responses.
type apiDataset struct {
	Name       string    `json:"name"`
	Stage      string    `json:"stage,omitempty"`
	Path       string    `json:"path,omitempty"` // protected by this server
	Versions   int       `json:"versions"`
	Latest     string    `json:"latest,omitempty"`
	LatestTime time.Time `json:"latest_time,omitzero"`
	Schedule   *apiPlan  `json:"schedule,omitempty"`
}

// apiPlan is a protected dataset's snapshot schedule in responses.
type apiPlan struct {
	Next       time.Time `json:"next,omitzero"`
	NextReason string    `json:"next_reason,omitempty"`
	Last       time.Time `json:"last,omitzero"`
	LastError  string    `json:"last_error,omitempty"`
	Failures   int       `json:"failures"`
	Dirty      bool      `json:"dirty"`
	Running    bool      `json:"running"`
}

// apiVersion is a version in responses.
type apiVersion struct {
	ID      string    `json:"id"`
	Dataset string    `json:"dataset"`
	Stage   string    `json:"stage,omitempty"`
	Parent  string    `json:"parent,omitempty"`
	Message string    `json:"message,omitempty"`
	User    string    `json:"user,omitempty"`
	UID     uint32    `json:"uid"`
	Host    string    `json:"host,omitempty"`
	Time    time.Time `json:"time"`
	Files   uint64    `json:"files"`
	Bytes   uint64    `json:"bytes"`
	Stored  uint64    `json:"stored_bytes"`
	Tree    string    `json:"tree,omitempty"`
}

func versionOf(v catalog.Version) apiVersion {
	return apiVersion{ID: v.ID, Dataset: v.Dataset, Stage: v.Stage, Parent: v.Parent, Message: v.Message, User: v.User,
		UID: v.UID, Host: v.Host, Time: v.Time.UTC(), Files: v.Files, Bytes: v.Bytes, Stored: v.Stored}
}

// versionsTTL is how long a dataset's version list is answered from
// memory: a version another process (the CLI, the scheduler) adds shows
// within it; one made through this API at once.
const versionsTTL = time.Second

// versionCache keeps each dataset's versions, newest first, for
// versionsTTL: clients poll them, and reading them is a tenth of a busy
// server's work.
type versionCache struct {
	mu sync.Mutex
	m  map[string]cachedVersions
}

type cachedVersions struct {
	vs []catalog.Version
	at time.Time
}

func (vc *versionCache) get(ctx context.Context, db *catalog.DB, dataset string) ([]catalog.Version, error) {
	vc.mu.Lock()
	cv, ok := vc.m[dataset]
	vc.mu.Unlock()
	if ok && time.Since(cv.at) < versionsTTL {
		return cv.vs, nil
	}
	at := time.Now()
	vs, err := db.Versions(ctx, dataset)
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(vs, func(a, b catalog.Version) int { return b.Time.Compare(a.Time) })
	vc.mu.Lock()
	if vc.m == nil || len(vc.m) > 10_000 {
		vc.m = map[string]cachedVersions{}
	}
	vc.m[dataset] = cachedVersions{vs: vs, at: at}
	vc.mu.Unlock()
	return vs, nil
}

func (vc *versionCache) forget(dataset string) {
	vc.mu.Lock()
	delete(vc.m, dataset)
	vc.mu.Unlock()
}

// stageOf is a dataset's stage: as configured, else its newest version's.
func (s *Server) stageOf(ctx context.Context, name string) (string, bool, error) {
	if d, ok := s.byName[name]; ok {
		return d.Stage, true, nil
	}
	vs, err := s.versions.get(ctx, s.opts.DB, name) // newest first
	if err != nil || len(vs) == 0 {
		return "", false, err
	}
	return vs[0].Stage, true, nil
}

// dataset checks the route's dataset exists and the token may act on
// it, and returns its stage.
func (c *call) dataset() (string, string, error) {
	name := c.r.PathValue("dataset")
	c.entry.Dataset = name
	stage, ok, err := c.s.stageOf(c.ctx, name)
	if err != nil {
		return "", "", err
	}
	if !ok {
		return "", "", errorf(http.StatusNotFound, "no dataset %q (list them with GET /api/v1/datasets)", name)
	}
	return name, stage, c.allow(stage)
}

func (s *Server) listDatasets(c *call) error {
	rows, err := s.opts.DB.Datasets(c.ctx)
	if err != nil {
		return err
	}
	out := []apiDataset{}
	seen := map[string]bool{}
	for _, r := range rows {
		stage, _, err := s.stageOf(c.ctx, r.Name)
		if err != nil {
			return err
		}
		seen[r.Name] = true
		if !c.allows(stage) {
			continue
		}
		out = append(out, apiDataset{Name: r.Name, Stage: stage, Path: s.byName[r.Name].Path, Versions: r.Versions, Latest: r.Latest, LatestTime: r.LatestTime.UTC()})
	}
	for _, d := range s.opts.Datasets {
		if !seen[d.Name] && c.allows(d.Stage) {
			out = append(out, apiDataset{Name: d.Name, Stage: d.Stage, Path: d.Path})
		}
	}
	slices.SortFunc(out, func(a, b apiDataset) int { return strings.Compare(a.Name, b.Name) })
	return c.json(http.StatusOK, map[string]any{"datasets": out})
}

func (s *Server) getDataset(c *call) error {
	name, stage, err := c.dataset()
	if err != nil {
		return err
	}
	out := apiDataset{Name: name, Stage: stage, Path: s.byName[name].Path}
	if s.opts.Schedule != nil {
		for _, st := range s.opts.Schedule() {
			if st.Name == name {
				out.Schedule = &apiPlan{Next: st.Next.UTC(), NextReason: st.NextReason, Last: st.Last.UTC(), LastError: st.LastError,
					Failures: st.Failures, Dirty: st.Dirty, Running: st.Running}
			}
		}
	}
	rows, err := s.opts.DB.Datasets(c.ctx)
	if err != nil {
		return err
	}
	for _, r := range rows {
		if r.Name == name {
			out.Versions, out.Latest, out.LatestTime = r.Versions, r.Latest, r.LatestTime.UTC()
		}
	}
	return c.json(http.StatusOK, out)
}

// intParam reads an integer query parameter within [lo, hi], def when absent.
func (c *call) intParam(name string, def, lo, hi int64) (int64, error) {
	v := c.r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, errorf(http.StatusBadRequest, "query parameter %s=%q: give a whole number from %d to %d", name, v, lo, hi)
	}
	return n, nil
}

func (s *Server) listVersions(c *call) error {
	name, _, err := c.dataset()
	if err != nil {
		return err
	}
	limit, err := c.intParam("limit", 100, 1, 1000)
	if err != nil {
		return err
	}
	vs, err := s.versions.get(c.ctx, s.opts.DB, name)
	if err != nil {
		return err
	}
	out := make([]apiVersion, 0, min(len(vs), int(limit)))
	for _, v := range vs[:min(len(vs), int(limit))] {
		out = append(out, versionOf(v))
	}
	return c.json(http.StatusOK, map[string]any{"versions": out, "total": len(vs)})
}

// version resolves the {version} path value (8+ hex characters, or
// "latest" with ?dataset=) and checks the token may read its stage.
func (c *call) version(prefix, dataset string) (*vault.Version, error) {
	if prefix == "latest" && dataset == "" {
		return nil, errorf(http.StatusBadRequest, "version \"latest\" needs ?dataset=NAME")
	}
	v, err := c.s.opts.Vault.ResolveVersion(c.ctx, prefix, dataset)
	switch {
	case errors.Is(err, vault.ErrVersionNotFound):
		return nil, errorf(http.StatusNotFound, "no version %s", prefix)
	case errors.Is(err, vault.ErrAmbiguousVersion), errors.Is(err, vault.ErrShortPrefix):
		return nil, errorf(http.StatusBadRequest, "%v", err)
	case err != nil:
		return nil, err
	}
	stage := v.Stage
	if d, ok := c.s.byName[v.Dataset]; ok && d.Stage != "" {
		stage = d.Stage
	}
	if c.entry.Version == "" {
		c.entry.Version, c.entry.Dataset = v.ID.String(), v.Dataset
	}
	return v, c.allow(stage)
}

func (s *Server) getVersion(c *call) error {
	v, err := c.version(c.r.PathValue("version"), c.r.URL.Query().Get("dataset"))
	if err != nil {
		return err
	}
	out := versionOf(catalog.VersionOf(v))
	out.Tree = v.Tree.String()
	return c.json(http.StatusOK, out)
}

// apiFile is a file of a version in responses.
type apiFile struct {
	Path    string `json:"path"`
	PathRaw string `json:"path_raw,omitempty"` // base64 of the exact bytes, when not UTF-8
	Type    string `json:"type"`
	Mode    uint32 `json:"mode"`
	Size    uint64 `json:"size"`
	MTime   string `json:"mtime"`
	UID     uint32 `json:"uid"`
	User    string `json:"user,omitempty"`
}

func apiPath(p string) (string, string) {
	if utf8.ValidString(p) {
		return p, ""
	}
	return strconv.Quote(p), base64.StdEncoding.EncodeToString([]byte(p))
}

var errEnough = errors.New("enough")

func (s *Server) listFiles(c *call) error {
	v, err := c.version(c.r.PathValue("version"), c.r.URL.Query().Get("dataset"))
	if err != nil {
		return err
	}
	limit, err := c.intParam("limit", 1000, 1, 100_000)
	if err != nil {
		return err
	}
	sub := c.r.URL.Query().Get("path")
	files := []apiFile{}
	truncated := false
	err = snapshot.Walk(c.ctx, s.opts.Vault, v.Tree, sub, func(path string, n *snapshot.Node) error {
		if len(files) == int(limit) {
			truncated = true
			return errEnough
		}
		f := apiFile{Type: string(n.Type), Mode: n.Mode, Size: n.Size, MTime: time.Unix(0, n.ModTime).UTC().Format(time.RFC3339Nano), UID: n.UID, User: n.User}
		f.Path, f.PathRaw = apiPath(path)
		files = append(files, f)
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		if errors.Is(err, snapshot.ErrPathNotFound) {
			return errorf(http.StatusNotFound, "version %s has no path %q", v.ID.Short(), sub)
		}
		return err
	}
	return c.json(http.StatusOK, map[string]any{"version": v.ID.String(), "files": files, "truncated": truncated})
}

func (s *Server) diff(c *call) error {
	q := c.r.URL.Query()
	if q.Get("from") == "" || q.Get("to") == "" {
		return errorf(http.StatusBadRequest, "give both versions: ?from=VERSION&to=VERSION")
	}
	a, err := c.version(q.Get("from"), q.Get("dataset"))
	if err != nil {
		return err
	}
	b, err := c.version(q.Get("to"), q.Get("dataset"))
	if err != nil {
		return err
	}
	d, err := snapshot.Diff(c.ctx, s.opts.Vault, a.Tree, b.Tree)
	if err != nil {
		return err
	}
	type change struct {
		Path    string   `json:"path"`
		PathRaw string   `json:"path_raw,omitempty"`
		What    []string `json:"what,omitempty"`
	}
	conv := func(cs []snapshot.Change) []change {
		out := make([]change, 0, len(cs))
		for _, ch := range cs {
			p, raw := apiPath(ch.Path)
			out = append(out, change{Path: p, PathRaw: raw, What: ch.What})
		}
		return out
	}
	return c.json(http.StatusOK, map[string]any{"from": a.ID.String(), "to": b.ID.String(),
		"added": conv(d.Added), "removed": conv(d.Removed), "modified": conv(d.Modified)})
}

func (s *Server) createSnapshot(c *call) error {
	name, stage, err := c.dataset()
	if err != nil {
		return err
	}
	if s.opts.Snapshot == nil {
		return notConfigured("take snapshots")
	}
	if _, ok := s.byName[name]; !ok {
		return errorf(http.StatusConflict, "dataset %q is not protected by this server, so it has no directory to snapshot", name)
	}
	by := "token:" + c.token.Name
	j := s.jobs.start("snapshot", name, stage, c.token.ID, func(ctx context.Context) (any, error) {
		id, err := s.opts.Snapshot(ctx, name, "requested by "+by)
		s.versions.forget(name)
		if err != nil {
			return nil, err
		}
		return map[string]string{"version": id}, nil
	})
	c.entry.Detail["job"] = j.ID
	return c.json(http.StatusAccepted, j)
}

func (s *Server) getSnapshotJob(c *call) error {
	name, _, err := c.dataset()
	if err != nil {
		return err
	}
	return s.getJob(c, "snapshot", c.r.PathValue("job"), name)
}

// getJob answers job id of kind (and, if given, of subject).
func (s *Server) getJob(c *call, kind, id string, subject ...string) error {
	j, ok := s.jobs.get(kind, id)
	if !ok || len(subject) > 0 && j.Subject != subject[0] {
		return errorf(http.StatusNotFound, "no %s job %q (jobs are kept in memory until the server restarts)", kind, id)
	}
	if err := c.allow(j.stage); err != nil {
		return err
	}
	return c.json(http.StatusOK, j)
}

// restoreRequest is the body of POST /api/v1/restores.
type restoreRequest struct {
	Version string `json:"version"`           // 8+ hex characters, or "latest" with dataset
	Dataset string `json:"dataset,omitempty"` // with version "latest"
	Path    string `json:"path,omitempty"`    // a sub-path of the version; "" for all of it
}

// restorePath checks a requested sub-path: relative, clean, no "..".
func restorePath(p string) (string, error) {
	if p == "" {
		return "", nil
	}
	clean := filepath.ToSlash(filepath.Clean("/" + p))[1:]
	if strings.Contains(p, "\x00") || clean != strings.Trim(p, "/") {
		return "", errorf(http.StatusBadRequest, "path %q: give a clean path inside the version, like data/train", p)
	}
	return clean, nil
}

func (s *Server) createRestore(c *call) error {
	var req restoreRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	if req.Version == "" {
		return errorf(http.StatusBadRequest, "give the version to restore: {\"version\": \"1a2b3c4d\"}")
	}
	sub, err := restorePath(req.Path)
	if err != nil {
		return err
	}
	v, err := c.version(req.Version, req.Dataset)
	if err != nil {
		return err
	}
	if s.opts.RestoreDir == "" {
		return notConfigured("restore (no restore directory)")
	}
	by := c.entry.Actor
	j := s.jobs.start("restore", v.ID.String(), v.Stage, c.token.ID, func(ctx context.Context) (any, error) {
		return s.restore(ctx, v, sub, by)
	})
	c.entry.Detail["job"] = j.ID
	return c.json(http.StatusAccepted, j)
}

// restore writes version v (or its sub-path) into a new directory under
// RestoreDir, and records it.
func (s *Server) restore(ctx context.Context, v *vault.Version, sub string, by ledger.Actor) (any, error) {
	if err := os.MkdirAll(s.opts.RestoreDir, 0o700); err != nil {
		return nil, fmt.Errorf("restore directory: %w", err)
	}
	target, err := os.MkdirTemp(s.opts.RestoreDir, v.Dataset+"-"+v.ID.Short()+"-")
	if err != nil {
		return nil, fmt.Errorf("restore directory: %w", err)
	}
	res, err := snapshot.Restore(ctx, s.opts.Vault, v.Tree, sub, target, snapshot.RestoreOptions{})
	e := ledger.Entry{Time: s.opts.Now().UTC(), Kind: "restore", Actor: by, Dataset: v.Dataset, Version: v.ID.String(), Path: target,
		Outcome: "ok", Detail: map[string]string{"via": "api"}}
	if sub != "" {
		e.Detail["sub"] = sub
	}
	if err != nil {
		e.Outcome = "failed: " + err.Error()
	}
	if aerr := s.opts.Entries.Add(context.WithoutCancel(ctx), e); aerr != nil && err == nil {
		err = fmt.Errorf("restored but not recorded in the ledger: %w", aerr)
	}
	if err != nil {
		return nil, err
	}
	return map[string]any{"target": target, "files": res.Files, "bytes": res.Bytes}, nil
}

func (s *Server) getRestoreJob(c *call) error { return s.getJob(c, "restore", c.r.PathValue("job")) }
