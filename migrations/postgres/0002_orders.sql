-- Work orders (工单): append-only hash-chained events (TK-LEDGER) and a projection.
--
-- Chain: ONE global chain over every order's events, in commit order (global_seq).
-- hash = SHA-256(prev_hash || Event::canonical_bytes), hex; the first prev_hash is 64
-- zeros. ledger_head holds the last link; every commit locks it first, so commits
-- are serialized and a deleted tail is detected too.
CREATE TABLE order_events (
    global_seq   BIGINT  NOT NULL PRIMARY KEY,
    order_id     TEXT    NOT NULL,
    seq          BIGINT  NOT NULL,
    at           TEXT    NOT NULL,   -- RFC 3339 as serialized in the event
    at_ms        BIGINT  NOT NULL,
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
    id         BIGINT  NOT NULL PRIMARY KEY,
    global_seq BIGINT  NOT NULL,
    hash       TEXT    NOT NULL,
    touched_at BIGINT  NOT NULL
);
INSERT INTO ledger_head (id, global_seq, hash, touched_at)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000', 0);

-- Projection: the latest state of each order, updated in the same transaction.
CREATE TABLE orders (
    id              TEXT    NOT NULL PRIMARY KEY,
    version         BIGINT  NOT NULL,
    state           TEXT    NOT NULL,
    city            TEXT    NOT NULL,
    category        TEXT    NOT NULL,
    urgency         TEXT    NOT NULL,
    area            TEXT    NOT NULL,
    units           TEXT    NOT NULL,   -- current units, space separated
    lead_unit       TEXT,
    contact_phone   TEXT    NOT NULL,
    received_ms     BIGINT  NOT NULL,
    transfer_due_ms BIGINT,
    feedback_due_ms BIGINT,
    callback_due_ms BIGINT,
    next_due_ms     BIGINT,            -- the limit currently running, if any
    due_sort        BIGINT  NOT NULL,   -- next_due_ms, or the largest value when none (index-friendly sort)
    completed_ms    BIGINT,
    overdue_done    BIGINT  NOT NULL,   -- completed after the feedback limit
    special_flag    BIGINT  NOT NULL,
    created_ms      BIGINT  NOT NULL,
    updated_ms      BIGINT  NOT NULL,
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
    created_ms BIGINT  NOT NULL,
    PRIMARY KEY (actor, key)
);
