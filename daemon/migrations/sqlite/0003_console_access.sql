-- The SASL user database: only SCRAM-SHA-256 salted keys, never passwords. One record
-- serves SCRAM (the keys) and PLAIN (PBKDF2 over the given password, compared with
-- stored_key).
CREATE TABLE sasl_users (
    name TEXT PRIMARY KEY NOT NULL,
    iterations INTEGER NOT NULL,
    salt BLOB NOT NULL,
    stored_key BLOB NOT NULL,
    server_key BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
-- Per-guest console ACL rules, checked in ascending `position` order, first match wins. They go
-- with the guest's definition.
CREATE TABLE console_acl (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    domain_uuid TEXT NOT NULL REFERENCES domains (uuid) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    kind TEXT NOT NULL,
    pattern TEXT NOT NULL,
    policy TEXT NOT NULL
);
CREATE INDEX console_acl_domain ON console_acl (domain_uuid, position);
