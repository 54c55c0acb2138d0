-- Trainyard database, version 1: bookkeeping of the database itself.
-- Each numbered file in this folder is one migration; the backend applies
-- the missing ones in order, each in its own transaction, and records it
-- in schema_version.

CREATE TABLE schema_version (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at INTEGER NOT NULL          -- Unix time, seconds
);

-- Facts about this installation, such as its creation time.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
