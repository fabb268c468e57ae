-- Which work orders were opened from which call (an order's `call_id`), so the
-- post-call survey answer stored with the call's CDR is appended to those orders
-- (CALL-ETIQUETTE). `settled` turns 1 once the survey was recorded on the order or the
-- call ended without one; the survey loop only reads unsettled rows.
CREATE TABLE order_calls (
    call_id    TEXT    NOT NULL,
    order_id   TEXT    NOT NULL REFERENCES orders (id),
    created_ms INTEGER NOT NULL,
    settled    INTEGER NOT NULL,
    PRIMARY KEY (call_id, order_id)
);
CREATE INDEX order_calls_unsettled ON order_calls (created_ms) WHERE settled = 0;

-- Orders written before this table: linked, and settled (their calls ended long ago).
INSERT INTO order_calls (call_id, order_id, created_ms, settled)
SELECT json_extract(snapshot, '$.fields.call_id'), id, created_ms, 1
FROM orders WHERE json_extract(snapshot, '$.fields.call_id') IS NOT NULL;
