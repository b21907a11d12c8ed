-- Supervisor API (issue #9): API tokens and the audit log. Same conventions: BIGINT epoch
-- ms, TEXT.

-- Tokens for integrations (`ccswitch user token NAME --role ROLE`). Only the SHA-256 of the
-- token is kept (hex); the token itself was shown once. Revoking deletes the row (the audit
-- log keeps the history).
CREATE TABLE api_tokens (
    name         TEXT   PRIMARY KEY,
    role         TEXT   NOT NULL,
    token_hash   TEXT   NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    -- Updated at most once a minute per token.
    last_used_at BIGINT
);

-- Who did what, when, from where: sign-ins (and failed ones), sign-outs, token changes,
-- agent state commands, recording downloads, unmasked numbers. Append-only.
-- user_name: a users.toml user, `token:NAME` for an API token, `cli` for the command line,
-- or the name tried at a failed sign-in. source: the client address (or `cli`).
CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        BIGINT NOT NULL,
    user_name TEXT   NOT NULL,
    source    TEXT   NOT NULL,
    action    TEXT   NOT NULL,
    target    TEXT,
    detail    TEXT
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_user ON audit_log (user_name, at);
