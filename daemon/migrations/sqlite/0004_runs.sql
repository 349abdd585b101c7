-- Guests running now, one row per run: the id the daemon gave it and the definition it was
-- started with (a running guest keeps that one when its stored definition changes). A
-- restarted daemon re-attaches to these; the row goes when the run ends.
CREATE TABLE runs (
    domain_uuid TEXT PRIMARY KEY NOT NULL REFERENCES domains (uuid) ON DELETE CASCADE,
    id INTEGER NOT NULL,
    definition TEXT NOT NULL,
    started_at BIGINT NOT NULL
);
