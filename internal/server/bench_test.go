package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/custodyhq/custody/internal/config"
	"github.com/custodyhq/custody/internal/ledger"
)

// BenchmarkReadRoutes is one request to each of the routes the load
// bench (bench/api) sends, through the whole middleware (ledger entry,
// metrics), on a ledger of a few thousand entries; TLS and the network
// are left out.
func BenchmarkReadRoutes(b *testing.B) {
	ts := newTestServer(b, func(o *Options) { o.RateLimit = config.RateLimit{PerToken: 1e9, PerAddress: 1e9, Burst: 1e9} })
	ctx := context.Background()
	for i := range 3000 {
		ts.opts.Entries.Add(ctx, ledger.Entry{Kind: "file.modify", Dataset: "features", Path: "/data/features/f" + string(rune('a'+i%26)), Outcome: "ok",
			Actor: ledger.Actor{User: "trainer"}})
	}
	h := ts.Handler()
	for _, path := range []string{"/api/v1/datasets/features/versions", "/api/v1/audit?limit=100", "/api/v1/audit?limit=100&after=1500"} {
		b.Run(path, func(b *testing.B) {
			req := httptest.NewRequest("GET", path, nil)
			req.Header.Set("Authorization", "Bearer "+ts.secrets[tokOperator])
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("%d %s", w.Code, w.Body)
				}
			}
		})
	}
}
