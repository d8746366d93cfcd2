-- What the period report reads of each decision record, narrow and typed (service/records/report_rows.py): one
-- row per record, written in the transaction that appends the record. Derived data, outside the hash chain:
-- records stored without a row (before this migration, by an older replica, by a bulk load) get theirs from
-- the report, which fills what is missing before it reads; a purge deletes the rows of the purged records.
CREATE TABLE report_rows (
    seq                    BIGINT NOT NULL PRIMARY KEY,   -- the record's seq
    decision_id            TEXT NOT NULL,
    created_us             BIGINT NOT NULL,               -- created_at in microseconds since 1970-01-01 UTC
    model_name             TEXT NOT NULL,
    model_version          TEXT NOT NULL,
    decision               TEXT NOT NULL,
    risk_band              TEXT NOT NULL,
    score                  INTEGER NOT NULL,
    probability_of_default DOUBLE PRECISION NOT NULL,
    latency_ms             DOUBLE PRECISION,
    reasons                TEXT NOT NULL,               -- compact JSON [[code, kind, adverse], ...]
    rules                  TEXT NOT NULL,               -- compact JSON [code, ...] of the fired rules
    applicant_fields       TEXT NOT NULL,               -- compact JSON [name, ...] of the recorded applicant
    applicant_values       TEXT NOT NULL,               -- compact JSON [value, ...] in the order of applicant_fields
    monitoring             TEXT NOT NULL                -- compact JSON of the monitoring data ({} when none)
);
CREATE INDEX report_rows_created_us ON report_rows (created_us);
