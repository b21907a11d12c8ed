-- Dispositions and notes (issue 10): how the agent classified the call. The call keeps its
-- current one (the last set wins); call_dispositions keeps every one set, in order.
-- Same conventions: BIGINT epoch ms, flags as integers 0/1, TEXT.
ALTER TABLE calls ADD COLUMN disposition TEXT;
ALTER TABLE calls ADD COLUMN disposition_code BIGINT;
ALTER TABLE calls ADD COLUMN disposition_resolved BIGINT;
ALTER TABLE calls ADD COLUMN disposition_note TEXT;
ALTER TABLE calls ADD COLUMN disposition_agent TEXT;
ALTER TABLE calls ADD COLUMN disposition_at BIGINT;

CREATE TABLE call_dispositions (
    id       BIGSERIAL PRIMARY KEY,
    call_id  TEXT    NOT NULL REFERENCES calls (call_id) ON DELETE CASCADE,
    agent    TEXT    NOT NULL,
    at       BIGINT  NOT NULL,
    code     BIGINT NOT NULL,
    name     TEXT    NOT NULL,
    resolved BIGINT NOT NULL,
    queue    TEXT,
    note     TEXT,
    UNIQUE (call_id, at, agent, name)
);
CREATE INDEX call_dispositions_call ON call_dispositions (call_id, at);

-- The repeat-call figure looks for a later call from the same number.
CREATE INDEX calls_caller_arrived ON calls (caller, arrived_at);
