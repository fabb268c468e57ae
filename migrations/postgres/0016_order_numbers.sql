-- Short order numbers read out on the phone (`鲁12348-20261207-0042`, H-8 and the
-- bureau's wording): `{prefix}-{day of receipt, Asia/Shanghai}-{sequence}`.
-- The number is written in the order's Created event (hash-chained) and copied here for
-- the look-up by number. Orders created before keep NULL: their chained events cannot
-- be rewritten, and they are still found by id.
ALTER TABLE orders ADD COLUMN number TEXT;
CREATE UNIQUE INDEX orders_number ON orders (number);

-- The last sequence given per prefix (province) and day; bumped in the creating
-- transaction.
CREATE TABLE order_number_counters (
    prefix TEXT    NOT NULL,
    day    TEXT    NOT NULL,   -- YYYYMMDD
    last_seq BIGINT  NOT NULL,
    PRIMARY KEY (prefix, day)
);
