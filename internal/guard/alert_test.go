package guard

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/guard/detect"
	"github.com/custodyhq/custody/internal/watch"
)

func TestGuardAlerts(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		outcome string
	}{
		{"delivered", nil, "ok"},
		{"not delivered", errors.New("smtp: connection refused"), "failed: smtp: connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			r.putVersion("v-before", "data", -time.Hour)
			al := &fakeAlerter{err: tt.err}
			g := r.guard(r.lock, r.stop.stop, Options{Alert: al}, map[string]map[string]detect.Strength{
				"entropy": {"a": detect.Strong}, "extension": {"a": detect.Weak},
			})
			r.run(g, r.ev(0, watch.CloseWrite, "a", mallory))
			inc := r.only()
			if len(al.alerts) != 1 {
				t.Fatalf("%d alerts, want 1", len(al.alerts))
			}
			a := al.alerts[0]
			if a.Incident != inc.ID || a.Event != "opened" || a.Severity != "major" || a.State != catalog.IncidentOpen ||
				a.Principal != "mallory" || a.UID == nil || *a.UID != 1001 || a.User != "mallory" || a.Exe != mallory.Exe ||
				!slices.Equal(a.Datasets, []string{"data"}) || !a.FirstEvent.Equal(t0) || a.Recovery["data"] != "v-before" {
				t.Errorf("alert %+v", a)
			}
			if !strings.Contains(a.Signals, "entropy: scripted entropy") || !strings.Contains(a.Signals, "extension: scripted extension") {
				t.Errorf("alert signals %q, want both detectors and their reasons", a.Signals)
			}
			if got := actionOutcomes(inc, "alert opened"); !slices.Equal(got, []string{tt.outcome}) {
				t.Errorf("alert actions %v, want [%s]", got, tt.outcome)
			}
			if got := r.led.of("alert"); len(got) != 1 || got[0].Outcome != tt.outcome || got[0].Detail["event"] != "opened" {
				t.Errorf("alert entries %+v, want one with outcome %q", got, tt.outcome)
			}
		})
	}
}

func TestWebhookPostsAlertJSON(t *testing.T) {
	type request struct {
		method, contentType, userAgent string
		body                           []byte
	}
	tests := []struct {
		name    string
		status  int
		wantErr string
	}{
		{"accepted", http.StatusNoContent, ""},
		{"refused", http.StatusInternalServerError, "answered 500 Internal Server Error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := make(chan request, 4)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				b, _ := io.ReadAll(req.Body)
				got <- request{req.Method, req.Header.Get("Content-Type"), req.Header.Get("User-Agent"), b}
				w.WriteHeader(tt.status)
			}))
			defer srv.Close()

			// Directly, and through a guard's incident.
			uid := uint32(1001)
			sent := Alert{Incident: 3, Event: "opened", Severity: "critical", State: "open", Principal: "mallory", UID: &uid,
				User: "mallory", Datasets: []string{"data"}, FirstEvent: t0, Recovery: map[string]string{"data": "v1"}, Signals: "canary: x"}
			err := Webhook{URL: srv.URL + "/hooks/s3cr3t-token"}.Alert(t.Context(), sent)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("Alert: %v, want error %q", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("the webhook's error names its secret path: %v", err)
			}
			req := <-got
			if req.method != http.MethodPost || req.contentType != "application/json" || req.userAgent != "custody-guard" {
				t.Errorf("request %s, Content-Type %q, User-Agent %q", req.method, req.contentType, req.userAgent)
			}
			var recv Alert
			if err := json.Unmarshal(req.body, &recv); err != nil {
				t.Fatalf("body %s: %v", req.body, err)
			}
			if recv.Incident != 3 || recv.Severity != "critical" || recv.UID == nil || *recv.UID != 1001 || !recv.FirstEvent.Equal(t0) ||
				recv.Recovery["data"] != "v1" || recv.Signals != "canary: x" {
				t.Errorf("received %+v, sent %+v", recv, sent)
			}
			var raw map[string]any
			json.Unmarshal(req.body, &raw)
			for _, k := range []string{"incident", "event", "severity", "state", "principal", "uid", "datasets", "first_event", "recovery_points", "signals"} {
				if _, ok := raw[k]; !ok {
					t.Errorf("body has no %q: %s", k, req.body)
				}
			}

			r := newRig(t)
			g := r.guard(r.lock, r.stop.stop, Options{Alert: Webhook{URL: srv.URL}}, map[string]map[string]detect.Strength{
				"canary": {"c": detect.Decisive},
			})
			r.run(g, r.ev(0, watch.Delete, "c", mallory))
			req = <-got
			var fromGuard Alert
			if err := json.Unmarshal(req.body, &fromGuard); err != nil {
				t.Fatalf("body %s: %v", req.body, err)
			}
			if fromGuard.Incident != 1 || fromGuard.Event != "opened" || fromGuard.Severity != "critical" || fromGuard.User != "mallory" {
				t.Errorf("the guard's alert %+v", fromGuard)
			}
			wantOutcome := "ok"
			if tt.wantErr != "" {
				wantOutcome = "failed: webhook http://127.0.0.1"
			}
			if got := r.led.of("alert"); len(got) != 1 || !strings.HasPrefix(got[0].Outcome, wantOutcome) {
				t.Errorf("alert entries %+v, want outcome %q", got, wantOutcome)
			}
		})
	}
}

func TestAlertersSendToEach(t *testing.T) {
	tests := []struct {
		name string
		errs []error
		want []string // in the joined error
	}{
		{"all delivered", []error{nil, nil}, nil},
		{"one fails", []error{errors.New("smtp down"), nil}, []string{"smtp down"}},
		{"both fail", []error{errors.New("smtp down"), errors.New("webhook 500")}, []string{"smtp down", "webhook 500"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var as Alerters
			var fakes []*fakeAlerter
			for _, err := range tt.errs {
				f := &fakeAlerter{err: err}
				fakes = append(fakes, f)
				as = append(as, f)
			}
			err := as.Alert(t.Context(), Alert{Incident: 9})
			for _, f := range fakes {
				if len(f.alerts) != 1 || f.alerts[0].Incident != 9 {
					t.Errorf("an alerter got %+v, want incident 9 once", f.alerts)
				}
			}
			if (err != nil) != (len(tt.want) > 0) {
				t.Errorf("Alert: %v, want an error with %v", err, tt.want)
			}
			for _, w := range tt.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("Alert: %v, want it to say %q", err, w)
				}
			}
		})
	}
}

// When the attack moves to a second dataset after the incident opened,
// the incident lists that dataset and its recovery point too: otherwise
// `custody incidents recover` refuses.
