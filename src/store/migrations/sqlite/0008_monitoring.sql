-- Supervisor listen / whisper / barge (issue 10 item 5): one segment per supervisor and
-- mode on the monitored call; a mode switch ends one segment and starts the next.
-- Same conventions: BIGINT epoch ms, TEXT. Every segment start is also an audit_log line.
CREATE TABLE monitor_segments (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id    TEXT    NOT NULL REFERENCES calls (call_id) ON DELETE CASCADE,
    supervisor TEXT    NOT NULL,
    agent      TEXT    NOT NULL,
    mode       TEXT    NOT NULL,
    started_at BIGINT  NOT NULL,
    ended_at   BIGINT,
    end_reason TEXT,
    UNIQUE (call_id, supervisor, started_at, mode)
);
CREATE INDEX monitor_segments_call ON monitor_segments (call_id, started_at);
