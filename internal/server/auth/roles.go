package auth

import (
	"slices"

	"github.com/custodyhq/custody/internal/catalog"
)

// Action is something an API route does; every route names one.
type Action string

// The API's actions.
const (
	DatasetsRead        Action = "datasets.read"        // list datasets, show one
	VersionsRead        Action = "versions.read"        // list and show versions
	VersionsDiff        Action = "versions.diff"        // diff two versions
	FilesList           Action = "files.list"           // list a version's files
	SnapshotCreate      Action = "snapshot.create"      // snapshot a dataset
	RestoreCreate       Action = "restore.create"       // start a restore job
	AuditRead           Action = "audit.read"           // search the audit ledger
	ProofsRead          Action = "proofs.read"          // inclusion and consistency proofs, checkpoints
	ReportsRead         Action = "reports.read"         // chain-of-custody reports
	IncidentsRead       Action = "incidents.read"       // list and show incidents
	IncidentsTransition Action = "incidents.transition" // contain, recover, mark false positive
	LockoutsRead        Action = "lockouts.read"        // list lockouts
	LockoutsRelease     Action = "lockouts.release"     // release a lockout
	OffsiteRead         Action = "offsite.read"         // offsite status
	OffsitePush         Action = "offsite.push"         // push to an offsite now
	TokensManage        Action = "tokens.manage"        // create, list, revoke tokens
	MetricsRead         Action = "metrics.read"         // Prometheus /metrics
)

// Scope is how far a role's permission for an action reaches.
type Scope int

const (
	Denied    Scope = iota // not at all
	Granted                // on every stage, and for actions without one
	OwnStages              // only on the stages the token names (data-scientist)
)

func (s Scope) String() string {
	switch s {
	case Granted:
		return "yes"
	case OwnStages:
		return "own stages"
	}
	return "no"
}

// Rule is one row of the matrix: how far each role may do Action.
type Rule struct {
	Action                                  Action
	Admin, Operator, DataScientist, Auditor Scope
}

// For is the scope of role in r; Denied for an unknown role.
func (r Rule) For(role string) Scope {
	switch role {
	case catalog.RoleAdmin:
		return r.Admin
	case catalog.RoleOperator:
		return r.Operator
	case catalog.RoleDataScientist:
		return r.DataScientist
	case catalog.RoleAuditor:
		return r.Auditor
	}
	return Denied
}

const (
	no  = Denied
	yes = Granted
	own = OwnStages
)

// matrix is the table Matrix documents.
var matrix = []Rule{
	{DatasetsRead, yes, yes, own, no},
	{VersionsRead, yes, yes, own, no},
	{VersionsDiff, yes, yes, own, no},
	{FilesList, yes, yes, own, no},
	{SnapshotCreate, yes, yes, own, no},
	{RestoreCreate, yes, yes, no, no},
	{AuditRead, yes, yes, no, yes},
	{ProofsRead, yes, no, no, yes},
	{ReportsRead, yes, no, no, yes},
	{IncidentsRead, yes, yes, no, yes},
	{IncidentsTransition, yes, yes, no, no},
	{LockoutsRead, yes, yes, no, no},
	{LockoutsRelease, yes, yes, no, no},
	{OffsiteRead, yes, yes, no, no},
	{OffsitePush, yes, yes, no, no},
	{TokensManage, yes, no, no, no},
	{MetricsRead, yes, yes, no, no},
}

// Matrix returns the role × action table Allowed applies, one rule per
// action, for documentation and tests. It is issue 7's roles, read as
// least privilege:
//
//	| action               | admin | operator | data-scientist | auditor |
//	|----------------------|-------|----------|----------------|---------|
//	| datasets.read        | yes   | yes      | own stages     | no      |
//	| versions.read        | yes   | yes      | own stages     | no      |
//	| versions.diff        | yes   | yes      | own stages     | no      |
//	| files.list           | yes   | yes      | own stages     | no      |
//	| snapshot.create      | yes   | yes      | own stages     | no      |
//	| restore.create       | yes   | yes      | no             | no      |
//	| audit.read           | yes   | yes      | no             | yes     |
//	| proofs.read          | yes   | no       | no             | yes     |
//	| reports.read         | yes   | no       | no             | yes     |
//	| incidents.read       | yes   | yes      | no             | yes     |
//	| incidents.transition | yes   | yes      | no             | no      |
//	| lockouts.read        | yes   | yes      | no             | no      |
//	| lockouts.release     | yes   | yes      | no             | no      |
//	| offsite.read         | yes   | yes      | no             | no      |
//	| offsite.push         | yes   | yes      | no             | no      |
//	| tokens.manage        | yes   | no       | no             | no      |
//	| metrics.read         | yes   | yes      | no             | no      |
//
// Why, where the issue leaves room:
//   - admin does everything, and is the only role that manages tokens.
//   - operator (snapshots, restores, offsite, incidents) handles
//     incidents, so it also reads and releases lockouts (the guard's
//     response to one), reads datasets, versions, files and diffs (to
//     pick what to restore), searches the audit log (an incident's
//     evidence is there) and reads metrics (it runs the service). Proofs
//     and custody reports are verification: the auditor's job, not its.
//   - data-scientist reads datasets and versions (list files, diff) and
//     snapshots, only on the stages its token names; nothing else, not
//     even the audit log, whose events name every dataset's paths.
//   - auditor reads audit, proofs (the audit log's evidence), reports and
//     incidents; it changes nothing and reads no data.
//
// TestMatrixDocMatchesTable keeps this comment and the table in step.
func Matrix() []Rule { return slices.Clone(matrix) }

// ScopeOf is how far role may do a: a route checks ScopeOf(t.Role, a) !=
// Denied before it runs, and a route that lists things of many stages
// then keeps those Allowed for t.
func ScopeOf(role string, a Action) Scope {
	for _, r := range matrix {
		if r.Action == a {
			return r.For(role)
		}
	}
	return Denied
}

// Allowed reports whether token t may do a on stage, the pipeline stage
// of the dataset it concerns ("" when it concerns none). A data-scientist
// token may act only on a stage it names; an unknown role or action is
// allowed nothing, and so is a revoked or suspended token (Authenticate
// refuses those first; this is a second lock).
func Allowed(t catalog.Token, a Action, stage string) bool {
	if !t.Revoked.IsZero() || !t.Suspended.IsZero() {
		return false
	}
	switch ScopeOf(t.Role, a) {
	case Granted:
		return true
	case OwnStages:
		return stage != "" && slices.Contains(t.Stages, stage)
	}
	return false
}
