// Package check verifies a vault: every object's hash and authentication,
// version signatures, the index against the packs, that every version's
// trees and contents are present, and with ReadData every blob's content.
// Damage is reported by object and by the versions and paths it affects.
package check

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/custodyhq/custody/internal/backend"
	"github.com/custodyhq/custody/internal/snapshot"
	"github.com/custodyhq/custody/internal/vault"
)

// Options choose how deep to check.
type Options struct {
	ReadData bool                  // read and verify every pack's full contents
	Progress func(done, total int) // packs done; may be nil
}

// Problem is one damaged or inconsistent object.
type Problem struct {
	Object string `json:"object"` // kind/name, e.g. "data/3fa2…"
	Error  string `json:"error"`
}

// Affected lists the paths of one version that damage reaches.
type Affected struct {
	Version string   `json:"version"`
	Dataset string   `json:"dataset"`
	Paths   []string `json:"paths"`
}

// Report is the outcome of a check.
type Report struct {
	Keys, IndexObjects, Packs, Versions, Trees, Blobs int
	ReadData                                          bool
	Problems                                          []Problem
	Affected                                          []Affected
	UnindexedPacks                                    []string // harmless leftovers of an interrupted write; prune removes them
}

// OK reports whether nothing is damaged.
func (r *Report) OK() bool { return len(r.Problems) == 0 && len(r.Affected) == 0 }

type checker struct {
	v     *vault.Vault
	opts  Options
	mu    sync.Mutex
	r     Report
	blobs map[vault.ID]vault.ID // blob -> pack, from the index objects
	bad   map[vault.ID]string   // blob -> why it is unusable
	clean map[vault.ID]bool     // trees fully checked and clean
}

func (c *checker) problem(object string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.r.Problems = append(c.r.Problems, Problem{Object: object, Error: err.Error()})
}

// Run checks v. The error is for a check that could not run; damage is in the report.
func Run(ctx context.Context, v *vault.Vault, opts Options) (*Report, error) {
	c := &checker{v: v, opts: opts, blobs: map[vault.ID]vault.ID{}, bad: map[vault.ID]string{}, clean: map[vault.ID]bool{}}
	c.r.ReadData = opts.ReadData
	for _, err := range v.VerifyKeys(ctx) {
		c.problem("keys", err)
	}
	if err := c.checkIndexAndPacks(ctx); err != nil {
		return nil, err
	}
	if err := c.checkVersions(ctx); err != nil {
		return nil, err
	}
	slices.SortFunc(c.r.Problems, func(a, b Problem) int { return cmpString(a.Object, b.Object) })
	return &c.r, nil
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// checkIndexAndPacks loads every index object and every pack header (or the
// whole pack with ReadData) and compares them.
func (c *checker) checkIndexAndPacks(ctx context.Context) error {
	idxIDs, err := c.v.IndexObjects(ctx)
	if err != nil {
		return err
	}
	c.r.IndexObjects = len(idxIDs)
	indexed := map[vault.ID]map[vault.ID]vault.BlobInfo{} // pack -> blob -> info
	for _, id := range idxIDs {
		packs, err := c.v.ReadIndexObject(ctx, id)
		if err != nil {
			c.problem("index/"+id.String(), err)
			continue
		}
		for _, p := range packs {
			m := indexed[p.Pack]
			if m == nil {
				m = map[vault.ID]vault.BlobInfo{}
				indexed[p.Pack] = m
			}
			for _, b := range p.Blobs {
				m[b.ID] = b
				c.blobs[b.ID] = p.Pack
			}
		}
	}
	stored, err := c.v.PackIDs(ctx)
	if err != nil {
		return err
	}
	c.r.Packs = len(stored)
	for p, blobs := range indexed {
		if _, ok := stored[p]; !ok {
			c.problem("data/"+p.String(), errors.New("pack is in the index but missing from the vault"))
			for b := range blobs {
				c.markBad(b, p, "its pack "+p.Short()+" is missing")
			}
		}
	}
	ids := make([]vault.ID, 0, len(stored))
	for id := range stored {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b vault.ID) int { return cmpString(a.String(), b.String()) })
	var done int
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for _, p := range ids {
		g.Go(func() error {
			c.checkPack(gctx, p, stored[p], indexed[p])
			c.mu.Lock()
			done++
			if c.opts.Progress != nil {
				c.opts.Progress(done, len(ids))
			}
			c.mu.Unlock()
			return gctx.Err()
		})
	}
	return g.Wait()
}

func (c *checker) markBad(blob, pack vault.ID, why string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.blobs[blob] == pack || c.blobs[blob] == (vault.ID{}) {
		c.bad[blob] = why
	}
}

func (c *checker) checkPack(ctx context.Context, p vault.ID, info backend.Info, indexed map[vault.ID]vault.BlobInfo) {
	name := "data/" + p.String()
	var blobs []vault.BlobInfo
	var err error
	if c.opts.ReadData {
		var damage []vault.BlobDamage
		blobs, damage, err = c.v.VerifyPack(ctx, p)
		for _, d := range damage {
			c.problem(name, fmt.Errorf("blob %s: %w", d.ID.Short(), d.Err))
			c.markBad(d.ID, p, "blob "+d.ID.Short()+" in pack "+p.Short()+" is damaged")
		}
	} else {
		blobs, err = c.v.ReadPackHeader(ctx, p, info.Size)
	}
	if err != nil {
		c.problem(name, err)
		for b := range indexed {
			c.markBad(b, p, "its pack "+p.Short()+" is damaged")
		}
		return
	}
	c.mu.Lock()
	c.r.Blobs += len(blobs)
	c.mu.Unlock()
	if indexed == nil {
		c.mu.Lock()
		c.r.UnindexedPacks = append(c.r.UnindexedPacks, p.String())
		c.mu.Unlock()
		return
	}
	inPack := map[vault.ID]vault.BlobInfo{}
	for _, b := range blobs {
		inPack[b.ID] = b
	}
	for id, want := range indexed {
		if got, ok := inPack[id]; !ok || got != want {
			c.problem(name, fmt.Errorf("index entry for blob %s does not match the pack header", id.Short()))
			c.markBad(id, p, "the index points to a wrong place in pack "+p.Short())
		}
	}
}

// checkVersions verifies every version's signature and walks its trees.
func (c *checker) checkVersions(ctx context.Context) error {
	ids, err := c.v.VersionIDs(ctx)
	if err != nil {
		return err
	}
	c.r.Versions = len(ids)
	for _, id := range ids {
		ver, err := c.v.LoadVersion(ctx, id)
		if err != nil {
			c.problem("versions/"+id.String(), err)
			c.r.Affected = append(c.r.Affected, Affected{Version: id.String(), Paths: []string{"(the whole version)"}})
			continue
		}
		var paths []string
		if err := c.walk(ctx, ver.Tree, "", &paths); err != nil {
			return err
		}
		if len(paths) > 0 {
			c.r.Affected = append(c.r.Affected, Affected{Version: id.String(), Dataset: ver.Dataset, Paths: paths})
		}
	}
	return nil
}

// walk checks a tree and everything below it, appending damaged paths.
// Clean subtrees are remembered, so versions that share them cost nothing.
func (c *checker) walk(ctx context.Context, tree vault.ID, dir string, damaged *[]string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if c.clean[tree] {
		return nil
	}
	name := dir
	if name == "" {
		name = "/"
	}
	if why, ok := c.usable(tree); !ok {
		*damaged = append(*damaged, name+" (directory listing: "+why+")")
		return nil
	}
	raw, err := c.v.LoadBlob(ctx, tree)
	if err != nil {
		c.problem("tree/"+tree.String(), err)
		*damaged = append(*damaged, name+" (directory listing unreadable)")
		return nil
	}
	t, err := snapshot.DecodeTree(raw)
	if err != nil {
		c.problem("tree/"+tree.String(), err)
		*damaged = append(*damaged, name+" (directory listing malformed)")
		return nil
	}
	c.r.Trees++
	before := len(*damaged)
	for i := range t.Nodes {
		n := &t.Nodes[i]
		p := dir + "/" + string(n.RawName())
		switch n.Type {
		case snapshot.TypeDir:
			if err := c.walk(ctx, *n.Subtree, p, damaged); err != nil {
				return err
			}
		case snapshot.TypeFile:
			for _, b := range n.Content {
				if why, ok := c.usable(b); !ok {
					*damaged = append(*damaged, p+" ("+why+")")
					break
				}
			}
		}
	}
	if len(*damaged) == before {
		c.clean[tree] = true
	}
	return nil
}

func (c *checker) usable(blob vault.ID) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if why, bad := c.bad[blob]; bad {
		return why, false
	}
	if _, ok := c.blobs[blob]; !ok {
		return "content " + blob.Short() + " is not in the index", false
	}
	return "", true
}
