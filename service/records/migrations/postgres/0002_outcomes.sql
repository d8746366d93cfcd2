-- Observed outcomes (repaid = good, defaulted = bad) posted back for past decisions, for back-testing.
-- A table of its own: outcomes never change the hash-chained decision records. One row per observation;
-- the effective outcome of a decision is its latest observation (e.g. a loan that later defaults).
-- No foreign key (the writer checks the decision exists): a retention purge of decision records must not
-- be blocked by their outcomes, which are then simply never joined again.
CREATE TABLE decision_outcomes (
    decision_id TEXT        NOT NULL,
    observed_at TIMESTAMPTZ NOT NULL,
    outcome     TEXT        NOT NULL CHECK (outcome IN ('good', 'bad')),
    recorded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (decision_id, observed_at)
);
