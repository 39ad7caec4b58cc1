package server

import (
	_ "embed"
	"net/http"
	"time"

	"github.com/custodyhq/custody/internal/server/auth"
)

// openapiDoc is the API's OpenAPI 3.1 document, served at
// /api/v1/openapi.json; TestOpenAPIDocumentsEveryRoute keeps it and
// routes in step.
//
//go:embed openapi.json
var openapiDoc []byte

// routes is the API. Each route names the action the role matrix
// (auth.Matrix) knows it by; routes with stage-bound data check the
// stage themselves (call.allow).
func (s *Server) routes() []route {
	return []route{
		{pattern: "GET /api/v1/openapi.json", handle: s.openapi},

		{pattern: "GET /api/v1/datasets", action: auth.DatasetsRead, handle: s.listDatasets},
		{pattern: "GET /api/v1/datasets/{dataset}", action: auth.DatasetsRead, handle: s.getDataset},
		{pattern: "GET /api/v1/datasets/{dataset}/versions", action: auth.VersionsRead, handle: s.listVersions},
		{pattern: "POST /api/v1/datasets/{dataset}/snapshots", action: auth.SnapshotCreate, handle: s.createSnapshot},
		{pattern: "GET /api/v1/datasets/{dataset}/snapshots/{job}", action: auth.SnapshotCreate, handle: s.getSnapshotJob},
		{pattern: "GET /api/v1/versions/{version}", action: auth.VersionsRead, handle: s.getVersion},
		{pattern: "GET /api/v1/versions/{version}/files", action: auth.FilesList, handle: s.listFiles},
		{pattern: "GET /api/v1/diff", action: auth.VersionsDiff, handle: s.diff},
		{pattern: "POST /api/v1/restores", action: auth.RestoreCreate, handle: s.createRestore},
		{pattern: "GET /api/v1/restores/{job}", action: auth.RestoreCreate, handle: s.getRestoreJob},

		{pattern: "GET /api/v1/audit", action: auth.AuditRead, handle: s.searchAudit},
		{pattern: "GET /api/v1/audit/checkpoint", action: auth.ProofsRead, handle: s.checkpoint},
		{pattern: "GET /api/v1/audit/proofs/{index}", action: auth.ProofsRead, handle: s.proveInclusion},
		{pattern: "POST /api/v1/audit/consistency", action: auth.ProofsRead, handle: s.proveConsistency},
		{pattern: "GET /api/v1/reports/custody", action: auth.ReportsRead, handle: s.custodyReport, timeout: 2 * time.Minute},

		{pattern: "GET /api/v1/incidents", action: auth.IncidentsRead, handle: s.listIncidents},
		{pattern: "GET /api/v1/incidents/{id}", action: auth.IncidentsRead, handle: s.getIncident},
		{pattern: "POST /api/v1/incidents/{id}/contain", action: auth.IncidentsTransition, handle: s.containIncident},
		{pattern: "POST /api/v1/incidents/{id}/recover", action: auth.IncidentsTransition, handle: s.recoverIncident, timeout: 30 * time.Minute},
		{pattern: "POST /api/v1/incidents/{id}/false-positive", action: auth.IncidentsTransition, handle: s.falsePositive},
		{pattern: "GET /api/v1/lockouts", action: auth.LockoutsRead, handle: s.listLockouts},
		{pattern: "DELETE /api/v1/lockouts/{uid}", action: auth.LockoutsRelease, handle: s.releaseLockout},

		{pattern: "GET /api/v1/offsites", action: auth.OffsiteRead, handle: s.listOffsites},
		{pattern: "POST /api/v1/offsites/{name}/push", action: auth.OffsitePush, handle: s.pushOffsite},
		{pattern: "GET /api/v1/offsites/{name}/push/{job}", action: auth.OffsitePush, handle: s.getPushJob},

		{pattern: "GET /api/v1/tokens", action: auth.TokensManage, handle: s.listTokens},
		{pattern: "POST /api/v1/tokens", action: auth.TokensManage, handle: s.createToken},
		{pattern: "DELETE /api/v1/tokens/{id}", action: auth.TokensManage, handle: s.revokeToken},

		{pattern: "GET /metrics", action: auth.MetricsRead, handle: s.metrics},
	}
}

func (s *Server) openapi(c *call) error {
	c.w.Header().Set("Content-Type", "application/json")
	c.w.Header().Set("Cache-Control", "max-age=300")
	_, err := c.w.Write(openapiDoc)
	return err
}

// notConfigured answers a route whose work this server was not given.
func notConfigured(what string) error {
	return errorf(http.StatusNotImplemented, "this server does not %s (it was started without it)", what)
}
