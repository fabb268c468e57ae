-- Call detail records (one per inbound call) and after-hours voice messages.
CREATE TABLE calls (
    call_id       TEXT    PRIMARY KEY,
    arrival_ms    INTEGER NOT NULL,   -- unix milliseconds (for ordering and ranges)
    caller        TEXT    NOT NULL,
    dialled       TEXT    NOT NULL,
    city          TEXT,
    category      TEXT,
    urgency       TEXT,
    path          TEXT    NOT NULL,   -- stages, comma-separated: ivr,after_hours,voice_message
    hung_up_first TEXT,
    record        TEXT    NOT NULL    -- the whole CDR as JSON
);
CREATE INDEX calls_arrival ON calls (arrival_ms);
CREATE INDEX calls_city ON calls (city, arrival_ms);

-- A voice message left after hours: the hook for the work-order store, which opens a
-- callback order from it (work_order is filled in then).
CREATE TABLE voice_messages (
    call_id       TEXT    PRIMARY KEY REFERENCES calls (call_id),
    caller        TEXT    NOT NULL,
    city          TEXT,
    category      TEXT    NOT NULL,
    urgency       TEXT    NOT NULL,
    recording     TEXT    NOT NULL,
    duration_ms   INTEGER NOT NULL,
    received_at   TEXT    NOT NULL,   -- RFC 3339, +08:00
    callback_due  TEXT    NOT NULL,   -- RFC 3339; 24:00 of a day is 00:00 of the next
    provisional   INTEGER NOT NULL,   -- 1 when the due date rests on a year without data
    work_order    TEXT
);
