package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/ledger"
	"github.com/custodyhq/custody/internal/server/auth"
)

// route is one API route: its ServeMux pattern, the action the matrix
// knows it by, and its handler.
type route struct {
	pattern string      // "GET /api/v1/datasets/{dataset}"
	action  auth.Action // "" for a public route (no token)
	handle  func(c *call) error
	// timeout bounds the handler (default 30 s).
	timeout time.Duration
}

// call is one request on its way through a route.
type call struct {
	s     *Server
	w     http.ResponseWriter
	r     *http.Request
	ctx   context.Context
	token catalog.Token
	route *route
	entry ledger.Entry // the request's ledger entry; handlers add to it

	// The response a handler gave with json or respond, written once the
	// handler's slot is free (a slow reader holds no slot).
	status  int
	ctype   string
	body    []byte
	recycle func() // if set, called once body is written
}

// apiError is an error with the status it answers.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func errorf(status int, format string, a ...any) error {
	return &apiError{status: status, msg: fmt.Sprintf(format, a...)}
}

// allow checks the token may do the route's action on a dataset of
// stage; a data-scientist token only on the stages it names.
func (c *call) allow(stage string) error {
	if !auth.Allowed(c.token, c.route.action, stage) {
		if stage == "" {
			return errorf(http.StatusForbidden, "role %s may not %s", c.token.Role, c.route.action)
		}
		return errorf(http.StatusForbidden, "role %s may not %s on stage %q (the token's stages: %s)",
			c.token.Role, c.route.action, stage, strings.Join(c.token.Stages, ", "))
	}
	return nil
}

// allows is allow as a filter: whether the token may see a thing of stage.
func (c *call) allows(stage string) bool { return auth.Allowed(c.token, c.route.action, stage) }

// json makes v, as JSON, the response with status.
func (c *call) json(status int, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	c.respond(status, "application/json", buf.Bytes())
	return nil
}

// respond makes body, of type ctype, the response with status.
func (c *call) respond(status int, ctype string, body []byte) {
	c.status, c.ctype, c.body = status, ctype, body
}

// flush writes the response a handler made.
func (c *call) flush() {
	if c.status == 0 {
		return
	}
	h := c.w.Header()
	h.Set("Content-Type", c.ctype)
	h.Set("Content-Length", strconv.Itoa(len(c.body)))
	c.w.WriteHeader(c.status)
	c.w.Write(c.body)
	c.status, c.body = 0, nil
	if c.recycle != nil {
		c.recycle()
		c.recycle = nil
	}
}

// decode reads the request body as JSON into v: one object, no unknown
// fields, within the body limit.
func (c *call) decode(v any) error {
	if ct := c.r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return errorf(http.StatusUnsupportedMediaType, "send the body as application/json, not %q", ct)
	}
	return decodeJSON(c.r.Body, v)
}

// decodeJSON reads exactly one JSON value from body into v, refusing
// unknown fields and trailing data.
func decodeJSON(body io.Reader, v any) error {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			return errorf(http.StatusRequestEntityTooLarge, "the request body is larger than %d bytes", tooBig.Limit)
		case errors.Is(err, io.EOF):
			return errorf(http.StatusBadRequest, "the request body is empty: send a JSON object")
		}
		return errorf(http.StatusBadRequest, "the request body is not valid JSON for this route: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return errorf(http.StatusRequestEntityTooLarge, "the request body is larger than %d bytes", tooBig.Limit)
		}
		return errorf(http.StatusBadRequest, "the request body has data after its JSON object")
	}
	return nil
}

// statusWriter remembers the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// clientIP is the request's peer address without its port. Custody does
// not trust X-Forwarded-For: behind a proxy, every client shares its
// limit, which errs on the safe side.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// wrap is everything a route's request goes through: the address's rate
// limit, authentication, the token's rate limit, the role check, the
// body limit and timeout, the handler, then the ledger entry and
// metrics.
func (s *Server) wrap(rt route) http.Handler {
	timeout := rt.timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.opts.Now()
		sw := &statusWriter{ResponseWriter: w}
		c := &call{s: s, w: sw, r: r, route: &rt}
		c.entry = ledger.Entry{Kind: "api.request", Path: r.URL.Path,
			Detail: map[string]string{"method": r.Method, "route": rt.pattern, "remote": clientIP(r)}}
		if rt.action != "" {
			c.entry.Detail["action"] = string(rt.action)
		}
		s.opts.Metrics.inflight.Inc()
		err := s.serve(c, r, timeout)
		s.opts.Metrics.inflight.Dec()
		status := 0
		switch {
		case err != nil && r.Context().Err() != nil:
			// The client hung up: nothing to answer, nothing failed here.
			status, err = statusClientGone, nil
		case err != nil:
			s.writeError(c, err)
		}
		c.flush()
		if status == 0 {
			if sw.status == 0 {
				sw.WriteHeader(http.StatusOK)
			}
			status = sw.status
		}
		s.record(c, status, err, s.opts.Now().Sub(start))
	})
}

// serve runs the checks and the handler; an error is the response.
func (s *Server) serve(c *call, r *http.Request, timeout time.Duration) error {
	ip := clientIP(r)
	if wait, ok := s.limits.allow("addr:"+ip, s.opts.RateLimit.PerAddress); !ok {
		return rateLimited(c, wait, "this address")
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	c.ctx = ctx
	if c.route.action != "" {
		t, err := s.tokens.authenticate(ctx, r.Header.Get("Authorization"), s.opts.Now())
		if err != nil {
			if isAuthError(err) {
				c.w.Header().Set("WWW-Authenticate", `Bearer realm="custody"`)
				return &apiError{status: http.StatusUnauthorized, msg: err.Error()}
			}
			return err
		}
		c.token = t
		c.entry.Actor = ledger.Actor{Token: t.Name, UID: t.UID}
		c.entry.Detail["token"] = t.ID
		if wait, ok := s.limits.allow("tok:"+t.ID, s.opts.RateLimit.PerToken); !ok {
			return rateLimited(c, wait, "this token")
		}
		if auth.ScopeOf(t.Role, c.route.action) == auth.Denied {
			return errorf(http.StatusForbidden, "role %s may not %s", t.Role, c.route.action)
		}
	}
	r.Body = http.MaxBytesReader(c.w, r.Body, s.opts.MaxBody)
	if r.ContentLength > s.opts.MaxBody {
		return errorf(http.StatusRequestEntityTooLarge, "the request body is larger than %d bytes", s.opts.MaxBody)
	}
	if c.route.timeout == 0 { // a quick route: wait for a slot, in arrival order
		select {
		case s.slots <- struct{}{}:
			defer func() { <-s.slots }()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return c.route.handle(c)
}

// statusClientGone is what the ledger and metrics record for a request
// whose client hung up before the answer (nginx's 499).
const statusClientGone = 499

func isAuthError(err error) bool {
	for _, e := range []error{auth.ErrMissing, auth.ErrMalformed, auth.ErrUnknown, auth.ErrRevoked, auth.ErrExpired, auth.ErrSuspended} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func rateLimited(c *call, wait time.Duration, who string) error {
	secs := int(math.Ceil(wait.Seconds()))
	if secs < 1 {
		secs = 1
	}
	c.w.Header().Set("Retry-After", strconv.Itoa(secs))
	return errorf(http.StatusTooManyRequests, "too many requests from %s: retry after %d s", who, secs)
}

// writeError answers err: its status and message for an apiError, 500
// and a generic message (the detail goes to the log) otherwise.
func (s *Server) writeError(c *call, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			ae = &apiError{status: http.StatusServiceUnavailable, msg: "the request took too long and was stopped; try a narrower query"}
		default:
			s.log.Error("api request failed", "route", c.route.pattern, "err", err)
			ae = &apiError{status: http.StatusInternalServerError, msg: "internal error: see the server's log"}
		}
	}
	if ae.status == http.StatusTooManyRequests {
		s.opts.Metrics.rateLimited.Inc()
	}
	c.json(ae.status, map[string]string{"error": ae.msg, "status": http.StatusText(ae.status)})
}

// record puts the request in the ledger and the metrics. A request the
// ledger cannot take is logged: the response has gone already.
func (s *Server) record(c *call, status int, err error, took time.Duration) {
	s.opts.Metrics.requests.WithLabelValues(c.route.pattern, strconv.Itoa(status)).Inc()
	s.opts.Metrics.duration.WithLabelValues(c.route.pattern).Observe(took.Seconds())
	e := c.entry
	e.Time = s.opts.Now().UTC()
	e.Detail["status"] = strconv.Itoa(status)
	e.Detail["ms"] = strconv.FormatFloat(float64(took.Microseconds())/1000, 'f', 1, 64)
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden || status == http.StatusTooManyRequests:
		e.Outcome = "denied"
	case status == statusClientGone:
		e.Outcome = "interrupted: the client hung up"
	case status >= 400:
		e.Outcome = "failed: " + http.StatusText(status)
	default:
		e.Outcome = "ok"
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.r.Context()), 5*time.Second)
	defer cancel()
	if aerr := s.opts.Entries.Add(ctx, e); aerr != nil {
		s.log.Error("api request not recorded in the ledger", "route", c.route.pattern, "err", aerr)
	}
}
