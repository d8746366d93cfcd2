-- What the period report reads of each decision record, narrow and typed (service/records/report_rows.py): one
-- row per record, written in the transaction that appends the record. Derived data, outside the hash chain:
-- records stored without a row (before this migration, by an older replica, by a bulk load) get theirs from
-- the report, which fills what is missing before it reads; a purge deletes the rows of the purged records.
CREATE TABLE report_rows (
    seq                    INTEGER NOT NULL PRIMARY KEY, -- the record's seq
    decision_id            TEXT NOT NULL,
    created_us             INTEGER NOT NULL,               -- created_at in microseconds since 1970-01-01 UTC
    score                  INTEGER NOT NULL,
    probability_of_default REAL NOT NULL,
    latency_ms             REAL,
    applicant_values       TEXT NOT NULL,               -- compact JSON [value, ...] of the recorded applicant
    -- what many decisions share, one compact JSON text: [model_name, model_version, decision, risk_band,
    -- [[reason code, kind, adverse], ...], [fired rule code, ...], [applicant field name, ...], monitoring object]
    profile                TEXT NOT NULL
);
CREATE INDEX report_rows_created_us ON report_rows (created_us);
