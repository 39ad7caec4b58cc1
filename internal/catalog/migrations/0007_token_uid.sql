-- The OS user an API token acts for, so that locking that user out
-- suspends its tokens too (a person's access is one thing to cut, however
-- it comes in). NULL: the token belongs to no OS user (a service, a CI
-- job), and no lockout touches it.
ALTER TABLE tokens ADD COLUMN uid BIGINT;
CREATE INDEX tokens_uid ON tokens (uid) WHERE uid IS NOT NULL;
