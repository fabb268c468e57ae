-- Read scope of the order list for unit-level users (GET /api/orders as a county, a
-- city or an institution), measured with 1M orders in bench/RESULTS-orders.md.
--
-- A user sees the orders in which any unit of their subtree had a part. One row per
-- (order, unit) for every unit that had a part (order_units) AND each of its ancestors
-- below the root (the root sees everything and needs no rows), so a user's scope is
-- the single range `unit = <the user's unit>`: the page walks the user's own orders in
-- deadline (or creation) order and stops at the page, and the total is a range count
-- of the same index. `state`, `due_sort` and `created_ms` are copies of the orders
-- columns, updated in the same transaction as the projection.
--
-- The ancestors come from the unit tree in the configuration: order_scope_tree holds
-- a fingerprint of the tree the rows were built with; at start-up the server rebuilds
-- order_scope from order_units when the configured tree differs (Store::install_unit_tree).
CREATE TABLE order_scope (
    order_id   TEXT    NOT NULL,
    unit       TEXT    NOT NULL,
    state      TEXT    NOT NULL,
    due_sort   INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (order_id, unit)
) WITHOUT ROWID;
CREATE INDEX order_scope_due ON order_scope (unit, due_sort, order_id);
CREATE INDEX order_scope_state_due ON order_scope (unit, state, due_sort, order_id);
CREATE INDEX order_scope_created ON order_scope (unit, created_ms, order_id);

CREATE TABLE order_scope_tree (
    id          INTEGER NOT NULL PRIMARY KEY,
    fingerprint TEXT    NOT NULL   -- '' = not built yet (or written without a tree)
);
INSERT INTO order_scope_tree (id, fingerprint) VALUES (1, '');
