-- One definition of overdue (rankings and /api/stats/orders): an order withdrawn
-- after its feedback limit counts as overdue (`overdue_done` = finished — completed or
-- withdrawn — after the limit). Rows written before: recompute from the withdrawal
-- event. Withdrawn orders are the only ones closed without `completed_ms`.
UPDATE orders SET overdue_done = 1
WHERE state = 'closed' AND completed_ms IS NULL AND feedback_due_ms IS NOT NULL
  AND EXISTS (
    SELECT 1 FROM order_events e
    WHERE e.order_id = orders.id
      AND e.kind LIKE '{"type":"withdrawn"%'
      AND e.at_ms > orders.feedback_due_ms
  );
