-- Calls and what happened in them, as the engine's records describe (src/engine/record.rs).
-- Timestamps are BIGINT UTC epoch milliseconds on every backend, so durations and aggregates
-- are exact integers and the Any driver can decode them. Flags are INTEGER 0/1 for the same
-- reason (Any cannot decode SQLite BOOLEAN).
CREATE TABLE calls (
    call_id            TEXT PRIMARY KEY,
    sip_call_id        TEXT NOT NULL DEFAULT '',
    caller             TEXT NOT NULL DEFAULT '',
    dialled            TEXT NOT NULL DEFAULT '',
    transport          TEXT NOT NULL DEFAULT '',
    arrived_at         BIGINT NOT NULL,
    ringing_at         BIGINT,
    answered_at        BIGINT,
    within_three_rings INTEGER,
    ring_cycle_ms      BIGINT,
    ivr_left_at        BIGINT,
    ivr_outcome        TEXT,
    ended_at           BIGINT,
    ended_by           TEXT,
    end_reason         TEXT,
    final_status       INTEGER,
    last_event_at      BIGINT NOT NULL
);
CREATE INDEX calls_arrived_at ON calls (arrived_at);
CREATE INDEX calls_unfinished ON calls (call_id) WHERE ended_at IS NULL;

CREATE TABLE ivr_steps (
    call_id TEXT    NOT NULL REFERENCES calls (call_id) ON DELETE CASCADE,
    seq     BIGINT  NOT NULL,
    at      BIGINT  NOT NULL,
    node    TEXT    NOT NULL,
    kind    TEXT    NOT NULL,
    digits  TEXT,
    detail  TEXT,
    PRIMARY KEY (call_id, seq)
);

CREATE TABLE call_variables (
    call_id TEXT   NOT NULL REFERENCES calls (call_id) ON DELETE CASCADE,
    name    TEXT   NOT NULL,
    value   TEXT   NOT NULL,
    at      BIGINT NOT NULL,
    PRIMARY KEY (call_id, name)
);

CREATE TABLE hold_segments (
    call_id    TEXT   NOT NULL REFERENCES calls (call_id) ON DELETE CASCADE,
    started_at BIGINT NOT NULL,
    ended_at   BIGINT,
    PRIMARY KEY (call_id, started_at)
);
