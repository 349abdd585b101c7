-- Console audit records (connects, auth results, lockouts, disconnects, revocations,
-- password and ACL changes). Times are milliseconds since the epoch; empty text means
-- "not applicable". Queried per domain over a time range, and pruned by age.
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ms INTEGER NOT NULL,
    event TEXT NOT NULL,
    domain TEXT NOT NULL,
    source TEXT NOT NULL,
    security_type TEXT NOT NULL,
    identity TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX audit_domain_time ON audit (domain, time_ms);
CREATE INDEX audit_time ON audit (time_ms);
