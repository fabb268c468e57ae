-- Attachments a citizen sent with a public submission (issue 17, W-9): images and PDF,
-- type checked by content, the file under <data_dir>/attachments/, linked here.
CREATE TABLE order_attachments (
    id           TEXT    NOT NULL PRIMARY KEY,   -- also the file's name
    order_id     TEXT    NOT NULL,
    content_type TEXT    NOT NULL,               -- as sniffed from the content
    size         INTEGER NOT NULL,
    sha256       TEXT    NOT NULL,
    created_ms   INTEGER NOT NULL
);
CREATE INDEX order_attachments_order ON order_attachments (order_id, created_ms);
