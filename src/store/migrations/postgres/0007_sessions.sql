-- Browser sign-in sessions (issue #9: the wallboard reconnects by itself after a restart).
-- Same conventions: BIGINT epoch ms, TEXT.

-- One row per signed-in browser. Only the SHA-256 of the cookie value is kept (hex); the
-- cookie itself never reaches the database. The role is not stored: it always comes from
-- users.toml at load. Sign-out deletes the row; expired rows are purged when the switch
-- starts.
CREATE TABLE web_sessions (
    session_hash TEXT   PRIMARY KEY,
    user_name    TEXT   NOT NULL,
    csrf_token   TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    -- created_at + the session lifetime at sign-in.
    expires_at   BIGINT NOT NULL,
    -- Updated at most once a minute per session (not on every request).
    last_seen    BIGINT NOT NULL
);
CREATE INDEX web_sessions_expires_at ON web_sessions (expires_at);
