-- Work orders (工单): append-only hash-chained events (TK-LEDGER) and a projection.
--
-- Chain: ONE global chain over every order's events, in commit order (global_seq).
-- hash = SHA-256(prev_hash || Event::canonical_bytes), hex; the first prev_hash is 64
-- zeros. ledger_head holds the last link; every commit locks it first, so commits
-- are serialized and a deleted tail is detected too.
CREATE TABLE order_events (
    global_seq   INTEGER NOT NULL PRIMARY KEY,
    order_id     TEXT    NOT NULL,
    seq          INTEGER NOT NULL,
    at           TEXT    NOT NULL,   -- RFC 3339 as serialized in the event
    at_ms        INTEGER NOT NULL,
    actor        TEXT    NOT NULL,
    role         TEXT    NOT NULL,
    unit         TEXT    NOT NULL,
    kind         TEXT    NOT NULL,   -- EventKind as JSON
    state_before TEXT    NOT NULL,
    state_after  TEXT    NOT NULL,
    reason       TEXT    NOT NULL,   -- derived from kind, for reading
    prev_hash    TEXT    NOT NULL,
    hash         TEXT    NOT NULL,
    UNIQUE (order_id, seq)
);

CREATE TABLE ledger_head (
    id         INTEGER NOT NULL PRIMARY KEY,
    global_seq INTEGER NOT NULL,
    hash       TEXT    NOT NULL,
    touched_at INTEGER NOT NULL
);
INSERT INTO ledger_head (id, global_seq, hash, touched_at)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000', 0);

-- Projection: the latest state of each order, updated in the same transaction.
CREATE TABLE orders (
    id              TEXT    NOT NULL PRIMARY KEY,
    version         INTEGER NOT NULL,
    state           TEXT    NOT NULL,
    city            TEXT    NOT NULL,
    category        TEXT    NOT NULL,
    urgency         TEXT    NOT NULL,
    area            TEXT    NOT NULL,
    units           TEXT    NOT NULL,   -- current units, space separated
    lead_unit       TEXT,
    contact_phone   TEXT    NOT NULL,
    received_ms     INTEGER NOT NULL,
    transfer_due_ms INTEGER,
    feedback_due_ms INTEGER,
    callback_due_ms INTEGER,
    next_due_ms     INTEGER,            -- the limit currently running, if any
    due_sort        INTEGER NOT NULL,   -- next_due_ms, or the largest value when none (index-friendly sort)
    completed_ms    INTEGER,
    overdue_done    INTEGER NOT NULL,   -- completed after the feedback limit
    special_flag    INTEGER NOT NULL,
    created_ms      INTEGER NOT NULL,
    updated_ms      INTEGER NOT NULL,
    snapshot        TEXT    NOT NULL    -- Order as JSON
);
CREATE INDEX orders_state ON orders (state);
CREATE INDEX orders_city ON orders (city);
CREATE INDEX orders_due_sort ON orders (due_sort, id);
CREATE INDEX orders_received ON orders (received_ms);
CREATE INDEX orders_phone ON orders (contact_phone);
CREATE INDEX orders_created ON orders (created_ms);

-- Every unit that ever had a part in an order (read scope, per-unit ledger).
CREATE TABLE order_units (
    order_id TEXT NOT NULL,
    unit     TEXT NOT NULL,
    PRIMARY KEY (order_id, unit)
);
CREATE INDEX order_units_unit ON order_units (unit, order_id);

-- Idempotency keys of order creation, per user.
CREATE TABLE idempotency_keys (
    actor      TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    body_hash  TEXT    NOT NULL,
    order_id   TEXT    NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (actor, key)
);
