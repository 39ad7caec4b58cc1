package server

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/custodyhq/custody/internal/catalog"
)

// Metrics are the daemon's Prometheus metrics, served at /metrics to
// tokens allowed metrics.read.
type Metrics struct {
	reg         *prometheus.Registry
	catalogOnce sync.Once

	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	inflight    prometheus.Gauge
	rateLimited prometheus.Counter

	events        prometheus.Counter
	overflows     prometheus.Counter
	snapDuration  *prometheus.HistogramVec
	snapBytes     *prometheus.CounterVec
	snapFailures  *prometheus.CounterVec
	offsiteLag    *prometheus.Desc
	pushMu        sync.Mutex
	pushedAt      map[string]time.Time
	offsitePushes *prometheus.CounterVec
}

// NewMetrics registers every metric, with the Go runtime's and the
// process's.
func NewMetrics() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "custody_api_requests_total",
		Help: "API requests by route and status code."}, []string{"route", "code"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "custody_api_request_duration_seconds",
		Help: "API request durations by route.", Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10}}, []string{"route"})
	m.inflight = prometheus.NewGauge(prometheus.GaugeOpts{Name: "custody_api_requests_in_flight", Help: "API requests being served."})
	m.rateLimited = prometheus.NewCounter(prometheus.CounterOpts{Name: "custody_api_rate_limited_total", Help: "API requests refused with 429."})
	m.events = prometheus.NewCounter(prometheus.CounterOpts{Name: "custody_watch_events_total",
		Help: "File events recorded by the watcher (rate() gives events/s)."})
	m.overflows = prometheus.NewCounter(prometheus.CounterOpts{Name: "custody_watch_overflows_total",
		Help: "Times the watcher lost events and rescanned."})
	m.snapDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "custody_snapshot_duration_seconds",
		Help: "Snapshot durations by dataset.", Buckets: prometheus.ExponentialBuckets(0.05, 2, 14)}, []string{"dataset"})
	m.snapBytes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "custody_snapshot_new_bytes_total",
		Help: "Bytes of new data snapshots stored, by dataset."}, []string{"dataset"})
	m.snapFailures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "custody_snapshot_failures_total",
		Help: "Snapshots that failed, by dataset."}, []string{"dataset"})
	m.offsiteLag = prometheus.NewDesc("custody_offsite_lag_seconds", "Seconds since the last successful push, by offsite (absent before the first).", []string{"offsite"}, nil)
	m.pushedAt = map[string]time.Time{}
	m.offsitePushes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "custody_offsite_pushes_total",
		Help: "Offsite pushes by offsite and result (ok, failed, paused)."}, []string{"offsite", "result"})
	m.reg.MustRegister(m.requests, m.duration, m.inflight, m.rateLimited, m.events, m.overflows,
		m.snapDuration, m.snapBytes, m.snapFailures, lagCollector{m}, m.offsitePushes,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Events counts n recorded file events.
func (m *Metrics) Events(n int) { m.events.Add(float64(n)) }

// Overflow counts a lost-events rescan.
func (m *Metrics) Overflow() { m.overflows.Inc() }

// Snapshot records one snapshot of dataset: how long it took, how many
// new bytes it stored, and whether it failed.
func (m *Metrics) Snapshot(dataset string, took time.Duration, newBytes uint64, err error) {
	if err != nil {
		m.snapFailures.WithLabelValues(dataset).Inc()
		return
	}
	m.snapDuration.WithLabelValues(dataset).Observe(took.Seconds())
	m.snapBytes.WithLabelValues(dataset).Add(float64(newBytes))
}

// Push records one push to an offsite: result is ok, failed or paused.
func (m *Metrics) Push(offsite, result string) {
	m.offsitePushes.WithLabelValues(offsite, result).Inc()
}

// PushedAt records when offsite was last pushed to successfully; the lag
// metric counts from it.
func (m *Metrics) PushedAt(offsite string, at time.Time) {
	m.pushMu.Lock()
	m.pushedAt[offsite] = at
	m.pushMu.Unlock()
}

// lagCollector reports each offsite's lag at scrape time.
type lagCollector struct{ m *Metrics }

func (c lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.m.offsiteLag }

func (c lagCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.pushMu.Lock()
	defer c.m.pushMu.Unlock()
	for name, at := range c.m.pushedAt {
		ch <- prometheus.MustNewConstMetric(c.m.offsiteLag, prometheus.GaugeValue, time.Since(at).Seconds(), name)
	}
}

// watchCatalog adds gauges read from the catalog at each scrape: open
// incidents and active lockouts.
func (m *Metrics) watchCatalog(db *catalog.DB) {
	m.catalogOnce.Do(func() { m.registerCatalog(db) })
}

func (m *Metrics) registerCatalog(db *catalog.DB) {
	m.reg.MustRegister(&catalogCollector{db: db,
		incidents: prometheus.NewDesc("custody_incidents_open", "Incidents not yet recovered or dismissed, by severity.", []string{"severity"}, nil),
		lockouts:  prometheus.NewDesc("custody_lockouts_active", "Principals locked out.", nil, nil),
	})
}

type catalogCollector struct {
	db                  *catalog.DB
	incidents, lockouts *prometheus.Desc
}

func (c *catalogCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.incidents; ch <- c.lockouts }

func (c *catalogCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if ins, err := c.db.Incidents(ctx, catalog.IncidentOpen, catalog.IncidentContained); err == nil {
		per := map[string]int{}
		for _, in := range ins {
			per[in.Severity]++
		}
		for _, sev := range []string{"warning", "major", "critical"} {
			ch <- prometheus.MustNewConstMetric(c.incidents, prometheus.GaugeValue, float64(per[sev]), sev)
		}
	} else {
		ch <- prometheus.NewInvalidMetric(c.incidents, err)
	}
	if ls, err := c.db.Lockouts(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(c.lockouts, prometheus.GaugeValue, float64(len(ls)))
	} else {
		ch <- prometheus.NewInvalidMetric(c.lockouts, err)
	}
}

// metrics serves /metrics.
func (s *Server) metrics(c *call) error {
	promhttp.HandlerFor(s.opts.Metrics.reg, promhttp.HandlerOpts{ErrorLog: nil}).ServeHTTP(c.w, c.r)
	return nil
}
