package guard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/syslog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/custodyhq/custody/internal/catalog"
)

// Alert is what people are told when an incident opens or grows.
type Alert struct {
	Incident   int64             `json:"incident"`
	Event      string            `json:"event"` // "opened"
	Severity   string            `json:"severity"`
	State      string            `json:"state"`
	Principal  string            `json:"principal"`
	UID        *uint32           `json:"uid,omitempty"`
	User       string            `json:"user,omitempty"`
	Exe        string            `json:"exe,omitempty"`
	Datasets   []string          `json:"datasets"`
	FirstEvent time.Time         `json:"first_event"`
	Recovery   map[string]string `json:"recovery_points,omitempty"`
	Signals    string            `json:"signals"`
	Host       string            `json:"host,omitempty"`
}

// Alerter delivers alerts. Alert may block (network); the guard calls it
// in the background.
type Alerter interface {
	Alert(ctx context.Context, a Alert) error
}

// Alerters sends to each in turn and joins their errors.
type Alerters []Alerter

// Alert implements Alerter.
func (as Alerters) Alert(ctx context.Context, a Alert) error {
	var errs []error
	for _, x := range as {
		errs = append(errs, x.Alert(ctx, a))
	}
	return errors.Join(errs...)
}

// Webhook POSTs each alert as a JSON body.
type Webhook struct {
	URL    string
	Client *http.Client // nil: 10 s timeout
}

// Alert implements Alerter.
func (w Webhook) Alert(ctx context.Context, a Alert) error {
	body, err := json.Marshal(a)
	if err != nil {
		return err
	}
	c := w.Client
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return errors.New("webhook: the URL is not valid")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "custody-guard")
	// A webhook URL often holds its secret in the path: errors name only
	// the scheme and host.
	where := req.URL.Scheme + "://" + req.URL.Host
	resp, err := c.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("webhook %s: %w", where, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook %s answered %s", where, resp.Status)
	}
	return nil
}

// Syslog writes each alert to the local syslog at priority crit (critical
// severity) or warning.
type Syslog struct{}

// Alert implements Alerter.
func (Syslog) Alert(_ context.Context, a Alert) error {
	pri := syslog.LOG_WARNING
	if a.Severity == Critical.String() {
		pri = syslog.LOG_CRIT
	}
	w, err := syslog.New(pri|syslog.LOG_AUTH, "custody-guard")
	if err != nil {
		return fmt.Errorf("syslog: %w", err)
	}
	defer w.Close()
	b, _ := json.Marshal(a)
	_, err = w.Write(b)
	return err
}

// alert sends, in the background, an alert about inc, and records the
// delivery as an action and a ledger entry.
func (g *Guard) alert(ctx context.Context, inc *liveIncident, event string, rec catalog.Incident) {
	if g.opts.Alert == nil {
		return
	}
	a := Alert{Incident: inc.id, Event: event, Severity: inc.severity.String(), State: rec.State,
		Principal: principalName(rec.UID, rec.User), UID: rec.UID, User: rec.User, Exe: rec.Exe,
		Datasets: rec.Datasets, FirstEvent: rec.FirstEvent, Recovery: rec.Recovery}
	for _, s := range rec.Signals {
		if a.Signals != "" {
			a.Signals += "; "
		}
		a.Signals += s.Detector + ": " + s.Reason
		if len(a.Signals) > 2000 {
			a.Signals += " …"
			break
		}
	}
	ctx = context.WithoutCancel(ctx)
	g.bg.Add(1)
	go func() {
		defer g.bg.Done()
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		outcome := "ok"
		if err := g.opts.Alert.Alert(actx, a); err != nil {
			outcome = "failed: " + err.Error()
			g.log.Warn("guard: alert not delivered", "incident", inc.id, "err", err)
		}
		g.action(ctx, &liveIncident{id: inc.id}, "alert "+event, outcome)
		if err := g.record(ctx, "alert", "", "", outcome, map[string]string{"incident": strconv.FormatInt(inc.id, 10), "event": event}); err != nil {
			g.log.Error("guard: recording an alert", "err", err)
		}
	}()
}

func principalName(uid *uint32, user string) string {
	switch {
	case user != "":
		return user
	case uid != nil:
		return "uid " + strconv.FormatUint(uint64(*uid), 10)
	}
	return "unknown"
}
