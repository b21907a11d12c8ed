-- Queues, agents and offers (issue #3). Same conventions as 0001: BIGINT epoch ms, TEXT.
ALTER TABLE calls ADD COLUMN queue TEXT;
ALTER TABLE calls ADD COLUMN queue_priority INTEGER;
ALTER TABLE calls ADD COLUMN queued_at BIGINT;
ALTER TABLE calls ADD COLUMN agent TEXT;
ALTER TABLE calls ADD COLUMN agent_answered_at BIGINT;
ALTER TABLE calls ADD COLUMN wrapup_ended_at BIGINT;
ALTER TABLE calls ADD COLUMN recording_path TEXT;
ALTER TABLE calls ADD COLUMN transferred_to TEXT;
ALTER TABLE calls ADD COLUMN transferred_at BIGINT;
ALTER TABLE calls ADD COLUMN transferred_by TEXT;
CREATE INDEX calls_queued_at ON calls (queued_at);
CREATE INDEX calls_agent_answered_at ON calls (agent_answered_at);

-- One row per offer of a call to an agent; ended_at/outcome NULL while it rings.
CREATE TABLE offer_attempts (
    call_id    TEXT   NOT NULL REFERENCES calls (call_id) ON DELETE CASCADE,
    attempt    BIGINT NOT NULL,
    agent      TEXT   NOT NULL,
    offered_at BIGINT NOT NULL,
    ended_at   BIGINT,
    outcome    TEXT,
    PRIMARY KEY (call_id, attempt)
);
CREATE INDEX offer_attempts_offered_at ON offer_attempts (offered_at);

-- Every agent state change, for occupancy. (agent, at, state) is unique so a replayed batch
-- adds nothing; id keeps the order of changes within one millisecond.
CREATE TABLE agent_state_changes (
    id     BIGSERIAL PRIMARY KEY,
    agent  TEXT   NOT NULL,
    at     BIGINT NOT NULL,
    state  TEXT   NOT NULL,
    reason TEXT,
    UNIQUE (agent, at, state)
);
CREATE INDEX agent_state_changes_at ON agent_state_changes (at);

CREATE TABLE callbacks (
    call_id      TEXT   NOT NULL REFERENCES calls (call_id) ON DELETE CASCADE,
    requested_at BIGINT NOT NULL,
    queue        TEXT   NOT NULL,
    number       TEXT   NOT NULL,
    PRIMARY KEY (call_id, requested_at)
);
