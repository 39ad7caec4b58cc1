// Package server is Custody's HTTPS API: the routes under /api/v1 and the
// OpenAPI document that describes them, bearer-token authentication, the
// role × action matrix of package auth, per-token and per-address rate
// limits, request limits and timeouts, a ledger entry for every request,
// Prometheus metrics, /healthz and /readyz.
//
// It holds no domain logic: each route reads the catalog or the vault, or
// hands work (snapshots, pushes, restores) to the functions the daemon
// gives it, as a job the client polls.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"time"

	"github.com/custodyhq/custody/internal/audit"
	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/config"
	"github.com/custodyhq/custody/internal/guard"
	"github.com/custodyhq/custody/internal/ledger"
	"github.com/custodyhq/custody/internal/offsite"
	"github.com/custodyhq/custody/internal/schedule"
	"github.com/custodyhq/custody/internal/vault"
)

// Dataset is a protected dataset as the server knows it.
type Dataset struct {
	Name  string
	Path  string
	Stage string
}

// Entries is where request entries go: an audit.Stream.
type Entries interface {
	Add(ctx context.Context, e ledger.Entry) error
}

// Options are what a Server serves and how.
type Options struct {
	Vault    *vault.Vault
	DB       *catalog.DB
	Recorder *audit.Recorder // proofs and checkpoints
	Entries  Entries         // a ledger entry per request
	Datasets []Dataset       // the datasets under protection

	// Snapshot takes a version of dataset now and returns its id; Push
	// copies the vault to an offsite. Both are the daemon's, serialised
	// with its own schedule. Nil: the route answers 501.
	Snapshot func(ctx context.Context, dataset, reason string) (string, error)
	Push     func(ctx context.Context, offsite string) (offsite.PushStats, error)
	// Schedule, if set, reports the daemon's snapshot schedule.
	Schedule func() []schedule.DatasetStatus
	// Incidents performs incident transitions and lockout releases; its
	// Record and By are set per request.
	Incidents guard.Manager
	// RestoreDir is where restore jobs write: each into a new directory
	// of its own under it.
	RestoreDir string

	RateLimit config.RateLimit
	// MaxBody bounds a request body (default 1 MiB).
	MaxBody int64
	// Ready reports whether the daemon is ready to serve (/readyz).
	Ready   func() error
	Metrics *Metrics
	Logger  *slog.Logger
	Now     func() time.Time
}

// Server is the API. Its jobs are owned by it: Close cancels and waits
// for them.
type Server struct {
	opts   Options
	log    *slog.Logger
	mux    *http.ServeMux
	limits *limiters
	jobs   *jobs
	byName map[string]Dataset
	tokens *tokenCache
	// slots admit quick routes' handlers, a few at a time in arrival
	// order: under load every request waits its turn, rather than some
	// waiting far longer than others for the CPU and the catalog.
	slots    chan struct{}
	pages    pageCache
	versions versionCache
}

// New returns a Server for opts.
func New(opts Options) (*Server, error) {
	if opts.Vault == nil || opts.DB == nil || opts.Recorder == nil || opts.Entries == nil {
		return nil, errors.New("server: the vault, catalog, recorder and entries are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxBody <= 0 {
		opts.MaxBody = 1 << 20
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics()
	}
	rl := opts.RateLimit
	if rl.PerToken <= 0 {
		rl.PerToken = 50
	}
	if rl.PerAddress <= 0 {
		rl.PerAddress = 100
	}
	if rl.Burst <= 0 {
		rl.Burst = 100
	}
	opts.RateLimit = rl
	opts.Metrics.watchCatalog(opts.DB)
	s := &Server{opts: opts, log: opts.Logger, byName: map[string]Dataset{},
		limits: newLimiters(rl, opts.Now), jobs: newJobs(opts.Now), tokens: newTokenCache(opts.DB),
		slots: make(chan struct{}, runtime.GOMAXPROCS(0))}
	for _, d := range opts.Datasets {
		s.byName[d.Name] = d
	}
	s.mux = http.NewServeMux()
	for _, r := range s.routes() {
		s.mux.Handle(r.pattern, s.wrap(r))
	}
	// Anything else is a 404, recorded like every request: probes for
	// routes that do not exist are worth seeing in the audit trail.
	s.mux.Handle("/", s.wrap(route{pattern: "/", handle: s.notFound}))
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	return s, nil
}

// Handler is the server's whole HTTP handler.
func (s *Server) Handler() http.Handler { return s.mux }

// Close cancels the running jobs and waits for them.
func (s *Server) Close() { s.jobs.close() }

// Serve answers HTTPS requests on ln with cert until ctx ends, then shuts
// down gracefully: requests in flight get up to 10 s to finish.
func (s *Server) Serve(ctx context.Context, ln net.Listener, tlsConfig *tls.Config) error {
	hs := &http.Server{
		Handler:           s.mux,
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	done := make(chan error, 1)
	go func() {
		if tlsConfig != nil {
			done <- hs.Serve(tls.NewListener(ln, tlsConfig))
		} else {
			done <- hs.Serve(ln)
		}
	}()
	select {
	case err := <-done:
		return fmt.Errorf("server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := hs.Shutdown(sctx)
	if serr := <-done; !errors.Is(serr, http.ErrServerClosed) && serr != nil {
		err = errors.Join(err, serr)
	}
	s.Close()
	return err
}

func (s *Server) notFound(c *call) error {
	return errorf(http.StatusNotFound, "no route %s %s: see /api/v1/openapi.json", c.r.Method, c.r.URL.Path)
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok\n"))
}

// readyz is 200 once the daemon is ready and the catalog answers.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	var err error
	if s.opts.Ready != nil {
		err = s.opts.Ready()
	}
	if err == nil {
		_, err = s.opts.DB.Size(ctx)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "not ready: %v\n", err)
		return
	}
	w.Write([]byte("ready\n"))
}
