-- Decision records: append-only, one hash chain in seq order.
CREATE TABLE decision_records (
    seq             BIGINT      PRIMARY KEY,      -- position in the chain, assigned from the chain head
    decision_id     TEXT        NOT NULL UNIQUE,
    application_id  TEXT        NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    idempotency_key TEXT        UNIQUE,
    request_hash    TEXT        NOT NULL,
    decision        TEXT        NOT NULL,
    risk_band       TEXT        NOT NULL,
    score           INTEGER     NOT NULL,
    model_name      TEXT        NOT NULL,
    model_version   TEXT        NOT NULL,
    reason_codes    TEXT[]      NOT NULL,
    payload         TEXT        NOT NULL,         -- canonical JSON exactly as hashed (jsonb would renormalise numbers)
    prev_hash       TEXT        NOT NULL,
    record_hash     TEXT        NOT NULL
);
CREATE INDEX decision_records_application_id ON decision_records (application_id, seq);
CREATE INDEX decision_records_created_at ON decision_records (created_at);
CREATE INDEX decision_records_model_version ON decision_records (model_version, seq);
CREATE INDEX decision_records_reason_codes ON decision_records USING GIN (reason_codes);

-- The chain head: one row, locked FOR UPDATE by every append, so appends from all workers and replicas
-- form one total order.
CREATE TABLE decision_chain_head (
    id          SMALLINT PRIMARY KEY CHECK (id = 1),
    seq         BIGINT   NOT NULL,
    record_hash TEXT     NOT NULL
);
INSERT INTO decision_chain_head (id, seq, record_hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- Retention checkpoints: after a purge the chain restarts from the hash of the last purged record.
CREATE TABLE decision_chain_checkpoints (
    through_seq    BIGINT      PRIMARY KEY,
    record_hash    TEXT        NOT NULL,
    purged_records BIGINT      NOT NULL,
    cutoff         TIMESTAMPTZ NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
