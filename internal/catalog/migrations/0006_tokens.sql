-- API bearer tokens. Only a hash of each secret is stored (SHA-256 of a
-- 256-bit random secret: see internal/server/auth). Rows are never
-- deleted: revoking sets revoked. A name is unique among active tokens
-- (not revoked, not expired); expiry depends on the clock, so CreateToken
-- checks that under a lock rather than an index. Times are Unix
-- nanoseconds, 0 for none.
--
-- stages: for data-scientist tokens, the pipeline stages the token may
-- read and snapshot, a sorted comma list of lower-case names; "" for the
-- other roles (and for a data-scientist token that may read none).
-- suspended: set by the guard while the token's principal is locked out.
CREATE TABLE tokens (
	id TEXT {{C}} PRIMARY KEY,
	name TEXT {{C}} NOT NULL,
	role TEXT {{C}} NOT NULL CHECK (role IN ('admin', 'operator', 'data-scientist', 'auditor')),
	stages TEXT {{C}} NOT NULL,
	secret_hash {{BLOB}} NOT NULL,
	created BIGINT NOT NULL,
	expires BIGINT NOT NULL,
	revoked BIGINT NOT NULL,
	suspended BIGINT NOT NULL,
	last_used BIGINT NOT NULL,
	created_by TEXT {{C}} NOT NULL
);
CREATE UNIQUE INDEX tokens_secret ON tokens (secret_hash);
CREATE INDEX tokens_name ON tokens (name, revoked);
