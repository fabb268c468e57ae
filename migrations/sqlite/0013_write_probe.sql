-- One row `/healthz` rewrites when it must know whether the database takes writes (a
-- full disk answers reads): see Store::check_writable.
CREATE TABLE write_probe (
    id    INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL
);
INSERT INTO write_probe (id, at_ms) VALUES (1, 0);
