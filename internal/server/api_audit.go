package server

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/config"
	"github.com/custodyhq/custody/internal/report"
)

// timeParam reads a time query parameter: RFC 3339, a date, or an age
// (7d, 36h: that long ago).
func (c *call) timeParam(name string) (time.Time, error) {
	v := c.r.URL.Query().Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation("2006-01-02", v, time.Local); err == nil {
		return t, nil
	}
	if d, err := config.ParseDuration(v); err == nil && d >= 0 {
		return c.s.opts.Now().Add(-d), nil
	}
	return time.Time{}, errorf(http.StatusBadRequest, "query parameter %s=%q: use 2026-11-01, 2026-11-01T12:00:00Z or an age like 7d", name, v)
}

// auditEntry is a ledger record in responses: its index and its
// canonical JSON as stored (and signed).
type auditEntry struct {
	Index int64           `json:"index"`
	Entry json.RawMessage `json:"entry"`
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
	hits, err := s.opts.DB.Search(c.ctx, cq)
	if err != nil {
		return err
	}
	out := make([]auditEntry, len(hits))
	for i, h := range hits {
		if !json.Valid(h.Record) {
			return errorf(http.StatusInternalServerError, "audit entry %d is not valid JSON: run 'custody audit verify'", h.Index)
		}
		out[i] = auditEntry{Index: h.Index, Entry: h.Record}
	}
	resp := map[string]any{"entries": out}
	if len(hits) == cq.Limit {
		resp["next"] = hits[len(hits)-1].Index
	}
	return c.json(http.StatusOK, resp)
}

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
