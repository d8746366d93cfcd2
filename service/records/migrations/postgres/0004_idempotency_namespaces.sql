-- Single requests and batch items have separate idempotency namespaces from this version on: a single request's
-- key is stored as sent, a batch item's as '<key> [<index>]' (a space never occurs in an Idempotency-Key header,
-- so the two can never meet). Batch items recorded before kept their old form '<key>#<index>', which a single
-- request's key could also take; such a key is looked up for a batch retry only among the records up to this
-- seq, so a retry across the upgrade still finds its record, and no newer single request is taken for one.
-- Hashed records are never rewritten.
CREATE TABLE idempotency_legacy (
    batch_items_through_seq BIGINT NOT NULL       -- decision records up to this seq may hold '<key>#<index>' items
);
INSERT INTO idempotency_legacy (batch_items_through_seq) SELECT COALESCE(MAX(seq), 0) FROM decision_records;
