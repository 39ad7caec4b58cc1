-- The catalog's index of what the vault holds. The vault's signed objects
-- are the truth; these rows make listing them cheap and can be rebuilt
-- from the vault. Times are Unix nanoseconds, 0 for none.

-- One row per dataset that ever had a version indexed; created is the
-- time of the earliest version seen.
CREATE TABLE datasets (
	name TEXT {{C}} PRIMARY KEY,
	created BIGINT NOT NULL
);

-- One row per version, named by its vault object id. Counters are uint64
-- stored bit for bit in BIGINT.
CREATE TABLE versions (
	id TEXT {{C}} PRIMARY KEY,
	dataset TEXT {{C}} NOT NULL REFERENCES datasets (name),
	parent TEXT {{C}} NOT NULL,
	stage TEXT {{C}} NOT NULL,
	message TEXT {{C}} NOT NULL,
	user_name TEXT {{C}} NOT NULL,
	uid BIGINT NOT NULL,
	host TEXT {{C}} NOT NULL,
	time BIGINT NOT NULL,
	files BIGINT NOT NULL,
	bytes BIGINT NOT NULL,
	stored BIGINT NOT NULL
);
CREATE INDEX versions_dataset ON versions (dataset, time DESC, id);
CREATE INDEX versions_time ON versions (time DESC, id);

-- Named pointers to versions. gen counts the moves: every change is a
-- compare-and-swap on it, so hosts sharing the database never lose one.
CREATE TABLE refs (
	dataset TEXT {{C}} NOT NULL,
	name TEXT {{C}} NOT NULL,
	target TEXT {{C}} NOT NULL,
	gen BIGINT NOT NULL,
	updated BIGINT NOT NULL,
	PRIMARY KEY (dataset, name)
);

-- Who has acted: OS users (kind 'os', with their uid) and API identities
-- (kind 'api').
CREATE TABLE principals (
	kind TEXT {{C}} NOT NULL,
	name TEXT {{C}} NOT NULL,
	uid BIGINT,
	first_seen BIGINT NOT NULL,
	last_seen BIGINT NOT NULL,
	actions BIGINT NOT NULL,
	PRIMARY KEY (kind, name)
);
