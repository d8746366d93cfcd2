-- Admin audit events and shadow decisions: entries of the SAME hash chain as the decision records. Their seq is
-- drawn from decision_chain_head under the same lock as every decision append, so the three tables hold one
-- chain with one seq order (verification merges them by seq).

-- Admin actions (promotions, rollbacks, shadow switches, purges, key changes). Control events carry the whole
-- serving state after the change; the latest of them is the deployment's serving state.
-- JSON columns are TEXT holding canonical JSON exactly as hashed (jsonb would renormalise numbers and key order).
CREATE TABLE audit_events (
    seq           BIGINT      PRIMARY KEY,        -- position in the chain, assigned from the chain head
    event_id      TEXT        NOT NULL UNIQUE,
    created_at    TIMESTAMPTZ NOT NULL,
    kind          TEXT        NOT NULL,
    actor         TEXT        NOT NULL,           -- canonical JSON object
    details       TEXT        NOT NULL,           -- canonical JSON object
    serving_state TEXT,                           -- canonical JSON object; set for control events only
    prev_hash     TEXT        NOT NULL,
    record_hash   TEXT        NOT NULL
);
CREATE INDEX audit_events_created_at ON audit_events (created_at);
CREATE INDEX audit_events_kind ON audit_events (kind, seq);
-- "The latest control event" (polled by every worker) reads one entry of this partial index, backwards.
CREATE INDEX audit_events_serving_state ON audit_events (seq) WHERE serving_state IS NOT NULL;

-- What a challenger model or a candidate policy decided for a live request (never returned to the caller):
-- one twin per champion decision and kind. No foreign key to decision_records (the writer checks the decision
-- exists under the chain lock): a retention purge removes a seq prefix, which may take a decision but keep the
-- shadow that was appended after it.
CREATE TABLE shadow_decisions (
    seq             BIGINT      PRIMARY KEY,      -- position in the chain, assigned from the chain head
    shadow_id       TEXT        NOT NULL UNIQUE,
    decision_id     TEXT        NOT NULL,         -- the champion decision it shadows
    created_at      TIMESTAMPTZ NOT NULL,
    kind            TEXT        NOT NULL,         -- challenger | policy
    model_name      TEXT        NOT NULL,
    model_version   TEXT        NOT NULL,
    policy_version  TEXT        NOT NULL,
    catalog_version TEXT        NOT NULL,
    decision        TEXT        NOT NULL,
    risk_band       TEXT        NOT NULL,
    score           INTEGER     NOT NULL,
    reason_codes    TEXT[]      NOT NULL,
    payload         TEXT        NOT NULL,         -- canonical JSON exactly as hashed
    prev_hash       TEXT        NOT NULL,
    record_hash     TEXT        NOT NULL,
    UNIQUE (decision_id, kind)                    -- also the index of the lookup by decision_id
);
CREATE INDEX shadow_decisions_created_at ON shadow_decisions (created_at);
CREATE INDEX shadow_decisions_kind ON shadow_decisions (kind, seq);
