-- When the reminder scheduler next has work on an order besides its running limits
-- (ticket::scheduler_due): an urgent order's leaders not yet told (H-13-2), a missed
-- limit not yet recorded (H-13-2, H-9). NULL: nothing besides the limits. Rows written
-- before stay NULL until their next event.
ALTER TABLE orders ADD COLUMN scheduler_due_ms BIGINT;
CREATE INDEX orders_scheduler_due ON orders (scheduler_due_ms);
