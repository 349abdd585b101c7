-- Domain definitions: the TOML a user defined, keyed by UUID, with a unique name.
CREATE TABLE domains (
    uuid TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    definition TEXT NOT NULL,
    autostart INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
