-- Status callbacks to partner hotlines (issue 17, H-6): the last ledger position
-- (order_events.global_seq) delivered to each partner. Callbacks are read from the
-- ledger after it, so one is as durable as its event; the cursor moves only after the
-- partner answered 2xx.
CREATE TABLE partner_cursors (
    partner  TEXT    NOT NULL PRIMARY KEY,   -- partner:<id>, as in idempotency_keys.actor
    last_seq INTEGER NOT NULL
);
-- A partner's orders are the ones its idempotency keys name.
CREATE INDEX idempotency_keys_order ON idempotency_keys (order_id);
