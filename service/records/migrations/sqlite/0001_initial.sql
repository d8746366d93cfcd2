-- Decision records: append-only, one hash chain in seq order.
-- Timestamps are ISO-8601 UTC text with microseconds and 'Z', so text order is time order.
CREATE TABLE decision_records (
    seq             INTEGER PRIMARY KEY,          -- position in the chain, assigned from the chain head
    decision_id     TEXT    NOT NULL UNIQUE,
    application_id  TEXT    NOT NULL,
    created_at      TEXT    NOT NULL,
    idempotency_key TEXT    UNIQUE,
    request_hash    TEXT    NOT NULL,
    decision        TEXT    NOT NULL,
    risk_band       TEXT    NOT NULL,
    score           INTEGER NOT NULL,
    model_name      TEXT    NOT NULL,
    model_version   TEXT    NOT NULL,
    reason_codes    TEXT    NOT NULL,             -- JSON array of reason codes
    payload         TEXT    NOT NULL,             -- canonical JSON, exactly as hashed
    prev_hash       TEXT    NOT NULL,
    record_hash     TEXT    NOT NULL
);
CREATE INDEX decision_records_application_id ON decision_records (application_id, seq);
CREATE INDEX decision_records_created_at ON decision_records (created_at);
CREATE INDEX decision_records_model_version ON decision_records (model_version, seq);

-- The chain head: one row, updated in the same transaction as every append; the write lock serialises appends.
CREATE TABLE decision_chain_head (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    seq         INTEGER NOT NULL,
    record_hash TEXT    NOT NULL
);
INSERT INTO decision_chain_head (id, seq, record_hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- Retention checkpoints: after a purge the chain restarts from the hash of the last purged record.
CREATE TABLE decision_chain_checkpoints (
    through_seq    INTEGER PRIMARY KEY,
    record_hash    TEXT    NOT NULL,
    purged_records INTEGER NOT NULL,
    cutoff         TEXT    NOT NULL,
    created_at     TEXT    NOT NULL
);
