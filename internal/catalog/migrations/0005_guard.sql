-- The guard's state: the incidents it opened, the files each touched, the
-- principals it locked out, and what it learned is normal for a
-- principal. Times are Unix nanoseconds, 0 for none.

-- One row per incident. Ids are assigned MAX(id)+1 and never reused (rows
-- are never deleted). rev counts the writes: every update is a
-- compare-and-swap on it, so guards on hosts sharing the database never
-- lose one. uid is NULL when the principal is unknown.
--
-- The JSON columns (UTF-8 text):
--   datasets  ["name", ...], sorted, unique
--   recovery  {"dataset": "version id", ...}: the last version before
--             first_event, the one to restore
--   signals   [{"detector": "", "strength": 0, "time": "RFC 3339", "path": "",
--             "reason": ""}, ...]: the first 200 seen; signals_dropped counts
--             the rest
--   actions   [{"time": "RFC 3339", "action": "", "outcome": "", "by": ""}, ...]:
--             what was done, in order, append-only
-- Strings in them are for people: bytes that are not UTF-8 are written \xNN.
CREATE TABLE incidents (
	id {{INTPK}},
	rev BIGINT NOT NULL,
	opened BIGINT NOT NULL,
	updated BIGINT NOT NULL,
	state TEXT {{C}} NOT NULL CHECK (state IN ('open', 'contained', 'recovered', 'false-positive')),
	severity TEXT {{C}} NOT NULL CHECK (severity IN ('warning', 'major', 'critical')),
	uid BIGINT,
	user_name TEXT {{C}} NOT NULL,
	exe TEXT {{C}} NOT NULL,
	datasets TEXT NOT NULL,
	first_event BIGINT NOT NULL,
	recovery TEXT NOT NULL,
	signals TEXT NOT NULL,
	signals_dropped BIGINT NOT NULL,
	actions TEXT NOT NULL
);
CREATE INDEX incidents_state ON incidents (state, opened);

-- The files an incident touched, one row per path (thousands per incident
-- are normal). Paths are the exact bytes, which need not be UTF-8: an
-- attacker chooses the names. first_seen is the earliest event seen on the
-- path; kinds the event kinds seen, a sorted comma list; old_path the name
-- before a rename, empty if none.
CREATE TABLE incident_files (
	incident BIGINT NOT NULL REFERENCES incidents (id),
	path {{BLOB}} NOT NULL,
	dataset TEXT {{C}} NOT NULL,
	first_seen BIGINT NOT NULL,
	kinds TEXT {{C}} NOT NULL,
	old_path {{BLOB}} NOT NULL,
	PRIMARY KEY (incident, path)
);

-- Principals locked out of the protected datasets. Rows are kept when a
-- lockout is released (released_at is set instead); at most one lockout
-- per uid is active. incident is 0 for a lockout an operator made.
CREATE TABLE lockouts (
	uid BIGINT NOT NULL,
	user_name TEXT {{C}} NOT NULL,
	incident BIGINT NOT NULL,
	since BIGINT NOT NULL,
	locked_by TEXT {{C}} NOT NULL,
	released_at BIGINT NOT NULL,
	released_by TEXT {{C}} NOT NULL
);
CREATE UNIQUE INDEX lockouts_active ON lockouts (uid) WHERE released_at = 0;
CREATE INDEX lockouts_uid ON lockouts (uid, since);

-- The guard's baseline: how much of a detector's signal is normal for a
-- principal, raised when an operator marks an incident a false positive.
-- uid is -1 for the unknown principal.
CREATE TABLE allowances (
	uid BIGINT NOT NULL,
	detector TEXT {{C}} NOT NULL,
	allowance BIGINT NOT NULL,
	PRIMARY KEY (uid, detector)
);
