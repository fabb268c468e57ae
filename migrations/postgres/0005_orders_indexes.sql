-- Order-list indexes for large tables (measured with 1M orders: bench/RESULTS-orders.md).
-- A list filtered by equality on city / state / category and sorted by deadline
-- (GET /api/orders?city=…&state=…&category=…&sort=deadline) walks one of these in
-- order and stops at the page; its COUNT(*) is a range count of the same index.
-- Without them the planner picked `orders_city` (half the rows for Jinan), sorted in
-- a temporary B-tree and counted row by row: ~0.4 s per request with 1M orders.
CREATE INDEX orders_city_state_category_due ON orders (city, state, category, due_sort, id);
CREATE INDEX orders_state_due ON orders (state, due_sort, id);
CREATE INDEX orders_city_due ON orders (city, due_sort, id);
