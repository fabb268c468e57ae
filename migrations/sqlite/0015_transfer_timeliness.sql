-- Transfer timeliness (H-8 1 working day, H-13-2 1 hour) per dispatch center and
-- dispatcher, counted by /api/stats/orders in SQL: the dispatch unit, who made the
-- first dispatch, whether it came after the transfer limit (NULL: not dispatched), and
-- whether the scheduler recorded the missed limit (ticket::transfer_on_time).
ALTER TABLE orders ADD COLUMN dispatch_unit TEXT;
ALTER TABLE orders ADD COLUMN dispatched_by TEXT;
ALTER TABLE orders ADD COLUMN transfer_late INTEGER;
ALTER TABLE orders ADD COLUMN transfer_missed INTEGER NOT NULL DEFAULT 0;
-- Rows written before: the first dispatch from the ledger (the dispatch unit stays
-- NULL, counted under the city, until the order's next event).
UPDATE orders SET
  dispatched_by = (
    SELECT e.actor FROM order_events e
    WHERE e.order_id = orders.id AND e.kind LIKE '{"type":"dispatched"%'
    ORDER BY e.seq LIMIT 1),
  transfer_late = (
    SELECT CASE WHEN e.at_ms > orders.transfer_due_ms THEN 1 ELSE 0 END
    FROM order_events e
    WHERE e.order_id = orders.id AND e.kind LIKE '{"type":"dispatched"%'
    ORDER BY e.seq LIMIT 1)
WHERE transfer_due_ms IS NOT NULL;
