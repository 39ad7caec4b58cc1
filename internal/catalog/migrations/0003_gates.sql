-- The zero-trust gate: while a gate is closed for a dataset (or, with an
-- empty dataset, for the whole vault), offsite pushes and destructive
-- steps refuse. The guard closes one when it opens an incident; an
-- operator opens it when the incident is resolved. Rows are never
-- deleted: opened is set instead. Times are Unix nanoseconds, 0 for none.
CREATE TABLE gates (
	id TEXT {{C}} PRIMARY KEY,
	dataset TEXT {{C}} NOT NULL,
	reason TEXT {{C}} NOT NULL,
	closed_by TEXT {{C}} NOT NULL,
	closed_at BIGINT NOT NULL,
	opened_by TEXT {{C}} NOT NULL,
	opened_at BIGINT NOT NULL
);
CREATE INDEX gates_closed ON gates (opened_at, dataset);
