-- Trainyard database, version 3: web sessions and API keys.
--
-- Neither table stores a usable secret: a session token and an API key
-- are kept only as the hex SHA-256 of the string the client sends, so a
-- copy of the database does not let anyone sign in. Both secrets are 32
-- random bytes, which is why a fast hash is enough here; passwords use
-- argon2id in accounts.password_hash instead.
--
-- Times are Unix milliseconds.

-- One signed-in browser. The backend deletes a row at sign-out, and when
-- it finds the session past expires_at (30 days after sign-in) or idle
-- for more than 7 days (last_seen_at). Each sign-in also deletes every
-- expired row.
CREATE TABLE web_sessions (
    token_hash   TEXT PRIMARY KEY,         -- hex SHA-256 of the token
    account_id   INTEGER NOT NULL REFERENCES accounts(id),
    csrf         TEXT NOT NULL,            -- X-CSRF-Token value, 64 hex
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,         -- absolute end of the session
    last_seen_at INTEGER NOT NULL          -- written at most once a minute
);

CREATE INDEX web_sessions_by_account ON web_sessions (account_id);

-- Keys for scripts: "ty_" and 43 base64url characters. The full key is
-- shown once, at creation; prefix (its first 11 characters) lets a person
-- tell keys apart afterwards. A revoked key stays listed but no longer
-- authenticates.
CREATE TABLE api_keys (
    id           INTEGER PRIMARY KEY,
    account_id   INTEGER NOT NULL REFERENCES accounts(id),
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,     -- hex SHA-256 of the key
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,                  -- written at most once a minute
    revoked_at   INTEGER                   -- NULL while the key is valid
);

CREATE INDEX api_keys_by_account ON api_keys (account_id);
