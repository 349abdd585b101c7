-- Batches of audit records moved from the local spool (`core::audit::spool`) into `audit`,
-- each written in the same transaction as its records: a batch replayed after a crash that
-- came between that commit and the spool's deletion is recognised here and skipped, so no
-- record is stored twice. `segment` is the spool segment's UUID, `chunk` the batch's index
-- in it; rows go once the segment file is deleted (and after a day at the latest).
CREATE TABLE audit_batches (
    segment TEXT NOT NULL,
    chunk BIGINT NOT NULL,
    time_ms BIGINT NOT NULL,
    PRIMARY KEY (segment, chunk)
);
