package server

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/config"
	"github.com/custodyhq/custody/internal/report"
)

// timeParam reads a time query parameter as the CLI reads --since:
// RFC 3339, a date, or an age (7d, 36h: that long ago).
func (c *call) timeParam(name string) (time.Time, error) {
	v := c.r.URL.Query().Get(name)
	t, err := config.ParseWhen(v, c.s.opts.Now())
	if err != nil {
		return time.Time{}, errorf(http.StatusBadRequest, "query parameter %s: %v", name, err)
	}
	return t, nil
}

// searchAudit pages through the ledger: ?dataset= &path= &user= &kind=
// &since= &until= &after=INDEX &limit=N. The response's "next" is the
// after= of the following page, absent on the last.
func (s *Server) searchAudit(c *call) error {
	q := c.r.URL.Query()
	cq := catalog.Query{Dataset: q.Get("dataset"), Path: q.Get("path"), User: q.Get("user"), Kind: q.Get("kind")}
	var err error
	if cq.Since, err = c.timeParam("since"); err != nil {
		return err
	}
	if cq.Until, err = c.timeParam("until"); err != nil {
		return err
	}
	if cq.After, err = c.intParam("after", -1, -1, 1<<62); err != nil {
		return err
	}
	limit, err := c.intParam("limit", 100, 1, 1000)
	if err != nil {
		return err
	}
	cq.Limit = int(limit)
	if page, ok := s.pages.get(cq); ok {
		c.respond(http.StatusOK, "application/json", page)
		return nil
	}
	// The page is built by hand, straight from the rows: each record is
	// already the canonical JSON the ledger signed, which encoding/json
	// would only copy, check and compact again (most of the route's CPU
	// under load).
	b := append(pagePool.Get().([]byte)[:0], `{"entries":[`...)
	n, last := 0, int64(0)
	err = s.opts.DB.SearchEach(c.ctx, cq, func(index int64, record []byte) error {
		// The catalog's own rows, written by the ledger: only an object
		// is taken (a full JSON check would cost as much as the query). A
		// row changed behind the ledger's back is what `custody audit
		// verify` finds.
		rec := bytes.TrimSpace(record)
		if len(rec) < 2 || rec[0] != '{' || rec[len(rec)-1] != '}' {
			return errorf(http.StatusInternalServerError, "audit entry %d is not a JSON object: run 'custody audit verify'", index)
		}
		if n > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"index":`...)
		b = strconv.AppendInt(b, index, 10)
		b = append(b, `,"entry":`...)
		b = append(b, rec...)
		b = append(b, '}')
		n, last = n+1, index
		return nil
	})
	if err != nil {
		pagePool.Put(b)
		return err
	}
	b = append(b, ']')
	full := n == cq.Limit
	if full {
		b = append(b, `,"next":`...)
		b = strconv.AppendInt(b, last, 10)
	}
	b = append(b, "}\n"...)
	c.respond(http.StatusOK, "application/json", b)
	if full {
		s.pages.put(cq, b) // kept: not recycled
	} else {
		c.recycle = func() { pagePool.Put(b) }
	}
	return nil
}

// pageCache keeps full audit pages. The ledger grows only at its end and
// a page is the first Limit matches after an index, so once a page is
// full, no later entry can enter it: it is the same for good, and
// clients that page through the log (exporters, dashboards) read the
// same pages again and again.
type pageCache struct {
	mu    sync.Mutex
	m     map[catalog.Query][]byte
	order []catalog.Query // oldest first
}

// maxPages bounds the cache: at 100 entries a page, about 10 MiB.
const maxPages = 256

func (pc *pageCache) get(q catalog.Query) ([]byte, bool) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	b, ok := pc.m[q]
	return b, ok
}

func (pc *pageCache) put(q catalog.Query, page []byte) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.m == nil {
		pc.m = map[catalog.Query][]byte{}
	}
	if _, ok := pc.m[q]; ok {
		return
	}
	if len(pc.order) >= maxPages {
		delete(pc.m, pc.order[0])
		pc.order = pc.order[1:]
	}
	pc.m[q] = page
	pc.order = append(pc.order, q)
}

// pagePool keeps audit page buffers for reuse.
var pagePool = sync.Pool{New: func() any { return make([]byte, 0, 64<<10) }}

func (s *Server) checkpoint(c *call) error {
	signed, err := s.opts.Recorder.Checkpoint(c.ctx)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, map[string]string{"checkpoint": string(signed), "verifier_key": s.opts.Recorder.VerifierKey()})
}

func base64Hashes(hs []tlog.Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = base64.StdEncoding.EncodeToString(h[:])
	}
	return out
}

func (s *Server) proveInclusion(c *call) error {
	index, err := strconv.ParseInt(c.r.PathValue("index"), 10, 64)
	if err != nil || index < 0 {
		return errorf(http.StatusBadRequest, "index %q: give an entry number from GET /api/v1/audit", c.r.PathValue("index"))
	}
	size, err := s.opts.DB.Size(c.ctx)
	if err != nil {
		return err
	}
	if index >= size {
		return errorf(http.StatusNotFound, "no entry %d: the ledger has %d", index, size)
	}
	proof, signed, err := s.opts.Recorder.Prove(c.ctx, index)
	if err != nil {
		return err
	}
	var record []byte
	if err := s.opts.DB.Records(c.ctx, index)(func(_ int64, r []byte) bool { record = r; return false }); err != nil {
		return err
	}
	return c.json(http.StatusOK, map[string]any{"index": index, "record": string(record), "proof": base64Hashes(proof),
		"checkpoint": string(signed), "verifier_key": s.opts.Recorder.VerifierKey()})
}

// consistencyRequest is the body of POST /api/v1/audit/consistency.
type consistencyRequest struct {
	Checkpoint string `json:"checkpoint"` // a signed checkpoint kept earlier
}

func (s *Server) proveConsistency(c *call) error {
	var req consistencyRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	if req.Checkpoint == "" {
		return errorf(http.StatusBadRequest, "give the checkpoint you kept: {\"checkpoint\": \"custody.vault/…\\n…\"}")
	}
	proof, signed, err := s.opts.Recorder.ProveConsistency(c.ctx, []byte(req.Checkpoint))
	if err != nil {
		return errorf(http.StatusBadRequest, "cannot prove consistency with that checkpoint: %v", err)
	}
	return c.json(http.StatusOK, map[string]any{"old_checkpoint": req.Checkpoint, "proof": base64Hashes(proof),
		"checkpoint": string(signed), "verifier_key": s.opts.Recorder.VerifierKey()})
}

// custodyReport is the chain-of-custody report: ?dataset= or ?path=,
// &since=; JSON, or HTML with ?format=html.
func (s *Server) custodyReport(c *call) error {
	q := c.r.URL.Query()
	opts := report.Options{Dataset: q.Get("dataset"), Path: q.Get("path"), Now: s.opts.Now()}
	if (opts.Dataset == "") == (opts.Path == "") {
		return errorf(http.StatusBadRequest, "give one of ?dataset=NAME or ?path=/abs/path")
	}
	var err error
	if opts.Since, err = c.timeParam("since"); err != nil {
		return err
	}
	c.entry.Dataset = opts.Dataset
	rep, err := report.Build(c.ctx, s.opts.Vault, s.opts.DB, opts)
	if err != nil {
		return err
	}
	switch q.Get("format") {
	case "", "json":
		return c.json(http.StatusOK, rep)
	case "html":
		c.w.Header().Set("Content-Type", "text/html; charset=utf-8")
		c.w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		return rep.WriteHTML(c.w)
	}
	return errorf(http.StatusBadRequest, "format=%q: use json or html", q.Get("format"))
}
