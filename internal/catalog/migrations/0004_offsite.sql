-- Offsite copies of the vault in S3 buckets. Credentials are never
-- stored: they come from the environment or AWS profiles.
CREATE TABLE offsites (
	name TEXT {{C}} PRIMARY KEY,
	url TEXT {{C}} NOT NULL,           -- s3://bucket/prefix
	endpoint TEXT {{C}} NOT NULL,      -- "" = AWS
	region TEXT {{C}} NOT NULL,
	insecure_tls INTEGER NOT NULL,     -- 1: TLS certificates not verified
	lock_mode TEXT {{C}} NOT NULL,     -- "", "GOVERNANCE" or "COMPLIANCE"
	lock_days INTEGER NOT NULL,
	created_at BIGINT NOT NULL,
	-- What the bucket looked like when it was added (hashes of its policy,
	-- lifecycle and Object Lock configuration), for offsite audit.
	baseline {{BLOB}} NOT NULL
);

-- One row per vault object an offsite holds, written as each upload
-- lands, so an interrupted push resumes where it stopped and a push with
-- nothing new sends no listing requests.
CREATE TABLE offsite_objects (
	offsite TEXT {{C}} NOT NULL REFERENCES offsites (name),
	key TEXT {{C}} NOT NULL,           -- kind/name, as in the vault
	size BIGINT NOT NULL,
	version_id TEXT {{C}} NOT NULL,    -- the S3 object version written
	sha256 TEXT {{C}} NOT NULL,        -- base64, as S3 reports it
	retain_until BIGINT NOT NULL,      -- 0: no retention
	legal_hold INTEGER NOT NULL,
	pushed_at BIGINT NOT NULL,
	PRIMARY KEY (offsite, key)
);
