-- Satisfaction surveys by SMS (issue #8). Same conventions: BIGINT epoch ms, TEXT.
--
-- One row per ended call that the survey policy looked at: `state` is the survey's current
-- state, `survey_events` its history. States: pending, deferred (quiet hours), sending, sent,
-- delivered, undeliverable, answered, expired, opted_out, skipped (skip_reason), failed
-- (fail_reason). survey_id is the stable client reference given to the SMS gateway.
CREATE TABLE surveys (
    survey_id        BIGINT  PRIMARY KEY,
    call_id          TEXT    NOT NULL UNIQUE REFERENCES calls (call_id) ON DELETE CASCADE,
    decided_at       BIGINT  NOT NULL,
    state            TEXT    NOT NULL,
    state_at         BIGINT  NOT NULL,
    skip_reason      TEXT,
    -- E.164; NULL once retention replaced it by number_hash.
    number           TEXT,
    -- Keyed hash (HMAC-SHA256, hex) of the E.164 number: frequency cap and opt-outs after
    -- retention.
    number_hash      TEXT,
    language         TEXT,
    body             TEXT,
    agent            TEXT,
    queue            TEXT,
    complaint        INTEGER NOT NULL DEFAULT 0,
    send_at          BIGINT,
    reply_by         BIGINT,
    sent_at          BIGINT,
    delivered_at     BIGINT,
    answered_at      BIGINT,
    csat             INTEGER,
    nps              INTEGER,
    nps_asked_at     BIGINT,
    comment          TEXT,
    -- The one clarification text was sent.
    clarified        INTEGER NOT NULL DEFAULT 0,
    fail_reason      TEXT,
    number_hashed_at BIGINT
);
CREATE INDEX surveys_decided_at ON surveys (decided_at);
CREATE INDEX surveys_number ON surveys (number);
CREATE INDEX surveys_number_hash ON surveys (number_hash);
CREATE INDEX surveys_state ON surveys (state, reply_by);

-- Every state change of a survey, with its time and a detail (gateway ids, reasons).
CREATE TABLE survey_events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    survey_id BIGINT  NOT NULL REFERENCES surveys (survey_id) ON DELETE CASCADE,
    at        BIGINT  NOT NULL,
    state     TEXT    NOT NULL,
    detail    TEXT
);
CREATE INDEX survey_events_survey ON survey_events (survey_id, at);

-- Every text we send: the survey question (message_id = survey_id), the NPS question, the
-- one clarification, the opt-out confirmation. The sender works on this table only.
-- state: queued, sending, sent, delivered, undeliverable, failed, cancelled.
CREATE TABLE sms_messages (
    message_id      BIGINT  PRIMARY KEY,
    survey_id       BIGINT  REFERENCES surveys (survey_id) ON DELETE CASCADE,
    kind            TEXT    NOT NULL,
    number          TEXT,
    body            TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    state           TEXT    NOT NULL,
    state_at        BIGINT  NOT NULL,
    due_at          BIGINT  NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    gateway         TEXT,
    gateway_ids     TEXT,
    sent_at         BIGINT,
    fail_reason     TEXT
);
CREATE INDEX sms_messages_due ON sms_messages (state, due_at);

-- Receipts name one part's gateway id; a long text has one per part.
CREATE TABLE sms_parts (
    gateway_id TEXT   NOT NULL PRIMARY KEY,
    message_id BIGINT NOT NULL REFERENCES sms_messages (message_id) ON DELETE CASCADE,
    delivered  INTEGER,
    state      TEXT,
    at         BIGINT
);
CREATE INDEX sms_parts_message ON sms_parts (message_id);

-- Every text received: matched to a survey or not. dedupe_key (gateway message id, or a
-- digest of sender+text+time) makes a replayed delivery a no-op.
CREATE TABLE sms_inbound (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at BIGINT  NOT NULL,
    number      TEXT,
    number_hash TEXT,
    body        TEXT    NOT NULL,
    survey_id   BIGINT  REFERENCES surveys (survey_id) ON DELETE SET NULL,
    -- csat, nps, opt_out, unreadable, comment, unmatched
    outcome     TEXT    NOT NULL,
    dedupe_key  TEXT    UNIQUE
);
CREATE INDEX sms_inbound_received_at ON sms_inbound (received_at);

-- Numbers that replied TD/退订/STOP: never surveyed again. Keyed by the number's hash.
CREATE TABLE sms_opt_outs (
    number_hash TEXT   PRIMARY KEY,
    number      TEXT,
    at          BIGINT NOT NULL,
    survey_id   BIGINT
);

-- Follow-up tasks: a low score or a complaint-queue call, owned by the agent who answered.
CREATE TABLE follow_up_tasks (
    task_id      INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id      TEXT    NOT NULL REFERENCES calls (call_id) ON DELETE CASCADE,
    survey_id    BIGINT,
    agent        TEXT,
    queue        TEXT,
    reason       TEXT    NOT NULL,
    score        INTEGER,
    opened_at    BIGINT  NOT NULL,
    due_at       BIGINT  NOT NULL,
    closed_at    BIGINT,
    note         TEXT,
    escalated_at BIGINT,
    UNIQUE (call_id, reason)
);
CREATE INDEX follow_up_tasks_due ON follow_up_tasks (closed_at, due_at);

-- Small settings the switch keeps for itself (the number-hash key when none is configured).
CREATE TABLE ccswitch_settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
