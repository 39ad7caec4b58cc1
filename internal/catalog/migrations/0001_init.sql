-- One row per ledger record: its bytes, the tlog stored hashes computed
-- when it was appended (32 bytes each, concatenated), and columns parsed
-- from it for audit search.
CREATE TABLE ledger (
	idx {{INTPK}},
	record {{BLOB}},
	hashes {{BLOB}} NOT NULL,
	time BIGINT NOT NULL,
	kind TEXT {{C}} NOT NULL,
	dataset TEXT {{C}} NOT NULL,
	path TEXT {{C}} NOT NULL,
	user_name TEXT {{C}} NOT NULL
);
CREATE INDEX ledger_path ON ledger (path, idx);
CREATE INDEX ledger_dataset ON ledger (dataset, idx);
CREATE INDEX ledger_user ON ledger (user_name, idx);
CREATE INDEX ledger_kind ON ledger (kind, idx);
CREATE INDEX ledger_time ON ledger (time);

-- The ledger's size, compared and advanced by every append: appenders in
-- several processes or hosts never interleave, and a deleted last row is
-- still noticed.
CREATE TABLE ledger_head (
	id INTEGER PRIMARY KEY CHECK (id = 1),
	size BIGINT NOT NULL
);
INSERT INTO ledger_head (id, size) VALUES (1, 0);

-- Signed checkpoints (C2SP tlog-checkpoint notes), one per tree size.
CREATE TABLE checkpoints (
	size BIGINT PRIMARY KEY,
	signed {{BLOB}} NOT NULL
);
