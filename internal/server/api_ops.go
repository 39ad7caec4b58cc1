package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/custodyhq/custody/internal/audit"
	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/guard"
	"github.com/custodyhq/custody/internal/ledger"
	"github.com/custodyhq/custody/internal/offsite"
	"github.com/custodyhq/custody/internal/server/auth"
)

// recordAs appends e to the ledger as this request's principal.
func (c *call) recordAs(ctx context.Context, e ledger.Entry, err error) error {
	e.Time = c.s.opts.Now().UTC()
	e.Actor = c.entry.Actor
	e.Outcome = audit.Outcome(err)
	if e.Detail == nil {
		e.Detail = map[string]string{}
	}
	e.Detail["via"] = "api"
	if aerr := c.s.opts.Entries.Add(context.WithoutCancel(ctx), e); aerr != nil {
		if err != nil {
			return err
		}
		return fmt.Errorf("%s succeeded but was not recorded in the audit ledger: %w", e.Kind, aerr)
	}
	return err
}

// manager is the incident manager acting for this request.
func (c *call) manager() *guard.Manager {
	m := c.s.opts.Incidents
	m.By = "token:" + c.token.Name
	m.Record = c.recordAs
	return &m
}

// incidentErr turns the manager's errors into statuses.
func incidentErr(err error) error {
	var ae *apiError
	switch {
	case err == nil || errors.As(err, &ae):
		return err
	case errors.Is(err, guard.ErrNoIncident), errors.Is(err, guard.ErrNotLockedOut), errors.Is(err, catalog.ErrNoIncident), errors.Is(err, catalog.ErrNoLockout):
		return &apiError{status: http.StatusNotFound, msg: err.Error()}
	case errors.Is(err, catalog.ErrIncidentState), errors.Is(err, guard.ErrCannotLockOut):
		return &apiError{status: http.StatusConflict, msg: err.Error()}
	}
	return err
}

func (c *call) incidentID() (int64, error) {
	id, err := strconv.ParseInt(c.r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, errorf(http.StatusBadRequest, "incident %q: give its number from GET /api/v1/incidents", c.r.PathValue("id"))
	}
	c.entry.Detail["incident"] = strconv.FormatInt(id, 10)
	return id, nil
}

func (s *Server) listIncidents(c *call) error {
	var states []string
	if st := c.r.URL.Query().Get("state"); st != "" {
		states = strings.Split(st, ",")
		for _, x := range states {
			if !slices.Contains(incidentStates, x) {
				return errorf(http.StatusBadRequest, "state=%q: use %s, or several joined by commas", x, strings.Join(incidentStates, ", "))
			}
		}
	}
	ins, err := s.opts.DB.Incidents(c.ctx, states...)
	if err != nil {
		return err
	}
	if ins == nil {
		ins = []catalog.Incident{}
	}
	return c.json(http.StatusOK, map[string]any{"incidents": ins})
}

var incidentStates = []string{catalog.IncidentOpen, catalog.IncidentContained, catalog.IncidentRecovered, catalog.IncidentFalsePositive}

func (s *Server) getIncident(c *call) error {
	id, err := c.incidentID()
	if err != nil {
		return err
	}
	in, err := s.opts.DB.Incident(c.ctx, id)
	if err != nil {
		return incidentErr(err)
	}
	files, err := s.opts.DB.IncidentFiles(c.ctx, id)
	if err != nil {
		return err
	}
	if files == nil {
		files = []catalog.IncidentFile{}
	}
	return c.json(http.StatusOK, map[string]any{"incident": in, "files": files})
}

func (s *Server) containIncident(c *call) error {
	id, err := c.incidentID()
	if err != nil {
		return err
	}
	res, err := c.manager().Contain(c.ctx, id)
	if err != nil {
		return incidentErr(err)
	}
	return c.json(http.StatusOK, res)
}

// recoverRequest is the body of POST /api/v1/incidents/{id}/recover.
type recoverRequest struct {
	Restore bool `json:"restore"` // put back the touched files from the recovery point
}

func (s *Server) recoverIncident(c *call) error {
	id, err := c.incidentID()
	if err != nil {
		return err
	}
	var req recoverRequest
	if c.r.ContentLength != 0 {
		if err := c.decode(&req); err != nil {
			return err
		}
	}
	res, err := c.manager().Recover(c.ctx, id, req.Restore)
	if err != nil {
		return incidentErr(err)
	}
	return c.json(http.StatusOK, res)
}

func (s *Server) falsePositive(c *call) error {
	id, err := c.incidentID()
	if err != nil {
		return err
	}
	in, err := c.manager().FalsePositive(c.ctx, id)
	if err != nil {
		return incidentErr(err)
	}
	return c.json(http.StatusOK, map[string]any{"incident": in})
}

func (s *Server) listLockouts(c *call) error {
	ls, err := s.opts.DB.Lockouts(c.ctx)
	if err != nil {
		return err
	}
	if ls == nil {
		ls = []catalog.Lockout{}
	}
	return c.json(http.StatusOK, map[string]any{"lockouts": ls})
}

func (s *Server) releaseLockout(c *call) error {
	uid, err := strconv.ParseUint(c.r.PathValue("uid"), 10, 32)
	if err != nil {
		return errorf(http.StatusBadRequest, "uid %q: give the numeric uid from GET /api/v1/lockouts", c.r.PathValue("uid"))
	}
	l, err := c.manager().ReleaseLockout(c.ctx, uint32(uid))
	if err != nil {
		return incidentErr(err)
	}
	return c.json(http.StatusOK, map[string]any{"released": l})
}

func (s *Server) listOffsites(c *call) error {
	recs, err := s.opts.DB.Offsites(c.ctx)
	if err != nil {
		return err
	}
	out := []offsite.Status{}
	for _, rec := range recs {
		st, err := offsite.GetStatus(c.ctx, rec, s.opts.Vault.Backend(), s.opts.DB, s.opts.Now())
		if err != nil {
			return err
		}
		out = append(out, st)
	}
	return c.json(http.StatusOK, map[string]any{"offsites": out})
}

func (s *Server) pushOffsite(c *call) error {
	name := c.r.PathValue("name")
	c.entry.Detail["offsite"] = name
	if _, err := s.opts.DB.Offsite(c.ctx, name); err != nil {
		if errors.Is(err, catalog.ErrNoOffsite) {
			return errorf(http.StatusNotFound, "no offsite %q (list them with GET /api/v1/offsites)", name)
		}
		return err
	}
	if s.opts.Push == nil {
		return notConfigured("push to offsites")
	}
	if err := s.opts.DB.CheckGate(c.ctx, "offsite push"); errors.Is(err, catalog.ErrGateClosed) {
		return &apiError{status: http.StatusConflict, msg: err.Error()}
	} else if err != nil {
		return err
	}
	j := s.jobs.start("push", name, "", c.token.ID, func(ctx context.Context) (any, error) {
		return s.opts.Push(ctx, name)
	})
	c.entry.Detail["job"] = j.ID
	return c.json(http.StatusAccepted, j)
}

func (s *Server) getPushJob(c *call) error { return s.getJob(c, "push", c.r.PathValue("job")) }

// apiToken is a token in responses; never its secret or hash.
type apiToken struct {
	ID        string   `json:"id"`
	Name      string   `json:"name"`
	Role      string   `json:"role"`
	Stages    []string `json:"stages,omitempty"`
	UID       *uint32  `json:"uid,omitempty"`
	Created   string   `json:"created"`
	Expires   string   `json:"expires,omitempty"`
	Revoked   string   `json:"revoked,omitempty"`
	Suspended string   `json:"suspended,omitempty"`
	LastUsed  string   `json:"last_used,omitempty"`
	CreatedBy string   `json:"created_by,omitempty"`
}

func tokenOf(t catalog.Token) apiToken {
	ts := func(tm time.Time, s string) string {
		if tm.IsZero() {
			return ""
		}
		return s
	}
	const f = "2006-01-02T15:04:05Z07:00"
	return apiToken{ID: t.ID, Name: t.Name, Role: t.Role, Stages: t.Stages, UID: t.UID, CreatedBy: t.CreatedBy,
		Created: t.Created.UTC().Format(f), Expires: ts(t.Expires, t.Expires.UTC().Format(f)),
		Revoked: ts(t.Revoked, t.Revoked.UTC().Format(f)), Suspended: ts(t.Suspended, t.Suspended.UTC().Format(f)),
		LastUsed: ts(t.LastUsed, t.LastUsed.UTC().Format(f))}
}

func (s *Server) listTokens(c *call) error {
	ts, err := s.opts.DB.Tokens(c.ctx, c.r.URL.Query().Get("all") == "true")
	if err != nil {
		return err
	}
	out := make([]apiToken, len(ts))
	for i, t := range ts {
		out[i] = tokenOf(t)
	}
	return c.json(http.StatusOK, map[string]any{"tokens": out})
}

// tokenRequest is the body of POST /api/v1/tokens.
type tokenRequest struct {
	Name    string   `json:"name"`
	Role    string   `json:"role"`
	Stages  []string `json:"stages,omitempty"`
	Expires string   `json:"expires,omitempty"` // 90d, 12h; "" or "never": no expiry
	UID     *uint32  `json:"uid,omitempty"`     // the OS user it acts for: suspended when that user is locked out
}

func (s *Server) createToken(c *call) error {
	var req tokenRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	if req.Name == "" || !slices.Contains(catalog.Roles, req.Role) {
		return errorf(http.StatusBadRequest, "give a name and a role (%s)", strings.Join(catalog.Roles, ", "))
	}
	var life time.Duration
	if req.Expires != "" && req.Expires != "never" {
		d, err := auth.ParseExpiry(req.Expires)
		if err != nil {
			return errorf(http.StatusBadRequest, "expires: %v", err)
		}
		life = d
	}
	secret, hash := auth.NewSecret()
	now := s.opts.Now().UTC()
	t := catalog.Token{Name: req.Name, Role: req.Role, Stages: req.Stages, UID: req.UID, Created: now, CreatedBy: "token:" + c.token.Name}
	if life > 0 {
		t.Expires = now.Add(life)
	}
	made, err := s.opts.DB.CreateToken(c.ctx, t, hash)
	e := ledger.Entry{Kind: "token.create", Detail: map[string]string{"name": req.Name, "role": req.Role, "id": made.ID}}
	if err := c.recordAs(c.ctx, e, err); err != nil {
		switch {
		case errors.Is(err, catalog.ErrTokenExists):
			return errorf(http.StatusConflict, "a token named %q is already active: revoke it or choose another name", req.Name)
		case errors.Is(err, catalog.ErrBadToken):
			return errorf(http.StatusBadRequest, "%v", err)
		}
		return err
	}
	return c.json(http.StatusCreated, map[string]any{"token": tokenOf(made), "secret": secret})
}

func (s *Server) revokeToken(c *call) error {
	id := c.r.PathValue("id")
	t, err := s.opts.DB.RevokeToken(c.ctx, id, s.opts.Now().UTC())
	s.tokens.forget()
	e := ledger.Entry{Kind: "token.revoke", Detail: map[string]string{"id": t.ID, "name": t.Name}}
	if err := c.recordAs(c.ctx, e, err); err != nil {
		switch {
		case errors.Is(err, catalog.ErrNoToken):
			return errorf(http.StatusNotFound, "no token %q", id)
		case errors.Is(err, catalog.ErrTokenRevoked):
			return errorf(http.StatusConflict, "token %q was already revoked", id)
		}
		return err
	}
	return c.json(http.StatusOK, map[string]any{"revoked": tokenOf(t)})
}
