-- Trainyard database, version 2: accounts, data sets, models, training
-- sessions, epochs, checkpoints, the ledger and progress events.
--
-- Money is in micro-dollars (1 USD = 1,000,000), as INTEGER, never REAL.
-- Times are Unix milliseconds unless a column says otherwise.

CREATE TABLE accounts (
    id            INTEGER PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT,                    -- argon2id string; NULL: no sign-in
    role          TEXT NOT NULL DEFAULT 'user'
                  CHECK (role IN ('user', 'admin')),
    -- Cloud training is an entitlement of the 'pro' plan.
    plan          TEXT NOT NULL DEFAULT 'free'
                  CHECK (plan IN ('free', 'pro')),
    created_at    INTEGER NOT NULL
);

-- What the operator sells: a device and its price per hour.
CREATE TABLE instance_types (
    id             INTEGER PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,   -- such as 'cpu' or 'gpu-0'
    device         TEXT NOT NULL,          -- train's device= value: cpu, 0
    price_per_hour INTEGER NOT NULL CHECK (price_per_hour >= 0),
    capacity       INTEGER NOT NULL DEFAULT 1 CHECK (capacity >= 1),
    enabled        INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1))
);

CREATE TABLE datasets (
    id          INTEGER PRIMARY KEY,
    account_id  INTEGER REFERENCES accounts(id),  -- NULL: a sample for all
    name        TEXT NOT NULL,
    task        TEXT NOT NULL CHECK (task IN ('classify', 'detect')),
    path        TEXT NOT NULL,             -- folder under the data folder
    status      TEXT NOT NULL DEFAULT 'ready'
                CHECK (status IN ('uploading', 'validating', 'ready',
                                  'invalid', 'deleted')),
    report      TEXT NOT NULL DEFAULT '',  -- validation report, JSON
    images      INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
);

CREATE TABLE models (
    id           INTEGER PRIMARY KEY,
    account_id   INTEGER NOT NULL REFERENCES accounts(id),
    dataset_id   INTEGER NOT NULL REFERENCES datasets(id),
    name         TEXT NOT NULL,
    task         TEXT NOT NULL CHECK (task IN ('classify', 'detect')),
    architecture TEXT NOT NULL,            -- model YAML, such as yolov8n-cls.yaml
    args         TEXT NOT NULL DEFAULT '{}', -- training arguments, JSON
    deleted      INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    created_at   INTEGER NOT NULL
);

-- One training of a model: created once, then started and resumed any
-- number of times. State machine (docs/ARCHITECTURE.md):
--   created -> initializing -> training -> completed | stopped | paused |
--   expired | failed; stopped, paused, failed, expired -> initializing.
CREATE TABLE sessions (
    id               INTEGER PRIMARY KEY,
    model_id         INTEGER NOT NULL REFERENCES models(id),
    account_id       INTEGER NOT NULL REFERENCES accounts(id),
    instance_type_id INTEGER NOT NULL REFERENCES instance_types(id),
    mode             TEXT NOT NULL CHECK (mode IN ('epochs', 'timed')),
    state            TEXT NOT NULL DEFAULT 'created'
                     CHECK (state IN ('created', 'initializing', 'training',
                                      'completed', 'stopped', 'paused',
                                      'expired', 'failed')),
    epochs           INTEGER NOT NULL,      -- target epochs
    epochs_done      INTEGER NOT NULL DEFAULT 0,
    time_limit_ms    INTEGER,               -- timed: the paid duration
    trained_ms       INTEGER NOT NULL DEFAULT 0, -- timed: used so far
    price            INTEGER,               -- timed: the exact price paid
    payment          TEXT CHECK (payment IN ('balance', 'prepaid')),
    rate             INTEGER NOT NULL,      -- price per hour at the start
    run_dir          TEXT,
    checkpoint       TEXT,                  -- last durable checkpoint
    reason           TEXT,                  -- why it failed, paused, ...
    queue_position   INTEGER,               -- while waiting for a device
    pid              INTEGER,               -- trainer process group
    heartbeat_at     INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);

-- The one-model rule: at most one initializing or training session per
-- account, enforced by the database itself.
CREATE UNIQUE INDEX sessions_one_active_per_account
    ON sessions (account_id) WHERE state IN ('initializing', 'training');

CREATE INDEX sessions_by_model ON sessions (model_id);

CREATE TABLE epochs (
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    epoch      INTEGER NOT NULL,            -- counted from 1
    seconds    REAL NOT NULL,               -- training time of the epoch
    cost       INTEGER NOT NULL,            -- micro-dollars charged
    metrics    TEXT NOT NULL DEFAULT '{}',  -- results.csv columns, JSON
    created_at INTEGER NOT NULL,
    PRIMARY KEY (session_id, epoch)
);

CREATE TABLE checkpoints (
    id         INTEGER PRIMARY KEY,
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    epoch      INTEGER NOT NULL,            -- epochs completed
    batch      INTEGER NOT NULL DEFAULT 0,  -- next batch; 0 at a boundary
    path       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- Append-only money movements. amount > 0 adds to the balance, < 0 takes
-- from it; balance_after is the balance after this row, and the CHECK
-- keeps every balance non-negative. A row that may be retried carries an
-- idempotency key: "epoch:SESSION:EPOCH" for an epoch charge, for example.
CREATE TABLE ledger (
    id              INTEGER PRIMARY KEY,
    account_id      INTEGER NOT NULL REFERENCES accounts(id),
    kind            TEXT NOT NULL
                    CHECK (kind IN ('topup', 'prepayment', 'charge',
                                    'refund', 'credit')),
    amount          INTEGER NOT NULL,
    balance_after   INTEGER NOT NULL CHECK (balance_after >= 0),
    idempotency_key TEXT UNIQUE,
    session_id      INTEGER REFERENCES sessions(id),
    model_id        INTEGER REFERENCES models(id),
    epoch           INTEGER,
    rate            INTEGER,                -- price per hour used
    seconds         REAL,                   -- time charged
    description     TEXT NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL
);

CREATE INDEX ledger_by_account ON ledger (account_id, id);

CREATE TRIGGER ledger_append_only_update BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;

CREATE TRIGGER ledger_append_only_delete BEFORE DELETE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;

-- Progress of a model's training, numbered per model so that a viewer
-- that reconnects asks for everything after the last number it saw.
CREATE TABLE progress_events (
    model_id   INTEGER NOT NULL REFERENCES models(id),
    seq        INTEGER NOT NULL,
    session_id INTEGER REFERENCES sessions(id),
    kind       TEXT NOT NULL,               -- batch, epoch, state, ...
    payload    TEXT NOT NULL,               -- JSON
    created_at INTEGER NOT NULL,
    PRIMARY KEY (model_id, seq)
);
