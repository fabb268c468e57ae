-- Directory of legal-service institutions and practitioners (W-6, W-8, DIR-LOOKUP):
-- one row per institution or practitioner, maintained by the province and the cities.
-- `search_text` (name, city, county, address, specialties) is what substring search
-- reads: on SQLite through an FTS5 table with the trigram tokenizer (any substring of
-- three or more characters, Chinese included). A trigram index cannot find one or two
-- characters (`法`, `律师`): `grams` lists every single character and every pair of
-- neighbouring characters of search_text as words, indexed by a second FTS5 table
-- (unicode61 words). Both are kept in step by the triggers below.
CREATE TABLE directory_entries (
    id             INTEGER PRIMARY KEY,
    kind           TEXT    NOT NULL,       -- law_firm, lawyer, notary_office, notary, …
    name           TEXT    NOT NULL,
    city           TEXT    NOT NULL,       -- the city's unit id (jinan)
    county         TEXT    NOT NULL DEFAULT '',
    address        TEXT    NOT NULL DEFAULT '',
    lat            REAL,
    lon            REAL,
    cell           INTEGER,                       -- 0.1° grid cell of (lat, lon), for "near me"
    phone          TEXT    NOT NULL DEFAULT '',
    service_hours  TEXT    NOT NULL DEFAULT '',   -- 09:00-12:00,13:30-17:30 (working days)
    specialties    TEXT    NOT NULL DEFAULT '',   -- joined with 、
    licence_no     TEXT    NOT NULL DEFAULT '',
    licence_status TEXT    NOT NULL,
    institution_id INTEGER,                       -- a practitioner's institution
    unit           TEXT,                          -- console unit that handles appointments
    integrity      TEXT    NOT NULL DEFAULT '[]', -- JSON: commendations and penalties
    intro          TEXT    NOT NULL DEFAULT '',
    search_text    TEXT    NOT NULL,
    grams          TEXT    NOT NULL DEFAULT '',   -- single characters and pairs, space-separated
    version        INTEGER NOT NULL DEFAULT 1,
    updated_ms     INTEGER NOT NULL
);
CREATE INDEX directory_entries_city_kind ON directory_entries (city, kind);
CREATE INDEX directory_entries_kind ON directory_entries (kind);
CREATE INDEX directory_entries_cell ON directory_entries (cell);
CREATE INDEX directory_entries_institution ON directory_entries (institution_id);
CREATE INDEX directory_entries_unit ON directory_entries (unit);

CREATE VIRTUAL TABLE directory_fts USING fts5(
    search_text, content = 'directory_entries', content_rowid = 'id', tokenize = 'trigram'
);
CREATE VIRTUAL TABLE directory_grams USING fts5(
    grams, content = 'directory_entries', content_rowid = 'id', tokenize = 'unicode61'
);
CREATE TRIGGER directory_fts_insert AFTER INSERT ON directory_entries BEGIN
    INSERT INTO directory_fts (rowid, search_text) VALUES (new.id, new.search_text);
    INSERT INTO directory_grams (rowid, grams) VALUES (new.id, new.grams);
END;
CREATE TRIGGER directory_fts_delete AFTER DELETE ON directory_entries BEGIN
    INSERT INTO directory_fts (directory_fts, rowid, search_text)
        VALUES ('delete', old.id, old.search_text);
    INSERT INTO directory_grams (directory_grams, rowid, grams)
        VALUES ('delete', old.id, old.grams);
END;
CREATE TRIGGER directory_fts_update AFTER UPDATE OF search_text, grams ON directory_entries BEGIN
    INSERT INTO directory_fts (directory_fts, rowid, search_text)
        VALUES ('delete', old.id, old.search_text);
    INSERT INTO directory_fts (rowid, search_text) VALUES (new.id, new.search_text);
    INSERT INTO directory_grams (directory_grams, rowid, grams)
        VALUES ('delete', old.id, old.grams);
    INSERT INTO directory_grams (rowid, grams) VALUES (new.id, new.grams);
END;

-- Every change to the directory (W-6 台账): who, when, what (the entry as written, or as
-- it was when deleted). Append-only: the triggers refuse updates and deletes.
CREATE TABLE directory_changes (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms    INTEGER NOT NULL,
    actor    TEXT    NOT NULL,
    entry_id INTEGER NOT NULL,
    action   TEXT    NOT NULL,   -- created | updated | deleted | imported
    detail   TEXT    NOT NULL    -- JSON
);
CREATE INDEX directory_changes_entry ON directory_changes (entry_id, id);
CREATE TRIGGER directory_changes_no_update BEFORE UPDATE ON directory_changes BEGIN
    SELECT RAISE(ABORT, 'directory_changes is append-only');
END;
CREATE TRIGGER directory_changes_no_delete BEFORE DELETE ON directory_changes BEGIN
    SELECT RAISE(ABORT, 'directory_changes is append-only');
END;

-- Appointments at an institution (W-8 预约). One slot holds one live booking: the
-- partial unique index makes a second booked/confirmed row for the same slot
-- impossible, whatever the number of servers.
CREATE TABLE directory_appointments (
    id             INTEGER PRIMARY KEY,
    code           TEXT    NOT NULL UNIQUE,
    institution_id INTEGER NOT NULL,
    slot_start_ms  INTEGER NOT NULL,
    slot_end_ms    INTEGER NOT NULL,
    citizen_name   TEXT    NOT NULL,
    phone          TEXT    NOT NULL,
    matter         TEXT    NOT NULL DEFAULT '',
    status         TEXT    NOT NULL,   -- booked | confirmed | cancelled | no_show
    created_ms     INTEGER NOT NULL,
    updated_ms     INTEGER NOT NULL
);
CREATE UNIQUE INDEX directory_appointments_one_per_slot
    ON directory_appointments (institution_id, slot_start_ms)
    WHERE status IN ('booked', 'confirmed');
CREATE INDEX directory_appointments_institution
    ON directory_appointments (institution_id, slot_start_ms);
CREATE INDEX directory_appointments_phone ON directory_appointments (phone);

-- What happened to each appointment (booked, confirmed, cancelled, no_show): append-only.
CREATE TABLE directory_appointment_events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    appointment_id INTEGER NOT NULL,
    at_ms          INTEGER NOT NULL,
    actor          TEXT    NOT NULL,
    action         TEXT    NOT NULL
);
CREATE INDEX directory_appointment_events_appointment
    ON directory_appointment_events (appointment_id, id);
CREATE TRIGGER directory_appointment_events_no_update BEFORE UPDATE ON directory_appointment_events BEGIN
    SELECT RAISE(ABORT, 'directory_appointment_events is append-only');
END;
CREATE TRIGGER directory_appointment_events_no_delete BEFORE DELETE ON directory_appointment_events BEGIN
    SELECT RAISE(ABORT, 'directory_appointment_events is append-only');
END;

-- Reminders to send before an appointment, written with the booking (nothing accepted
-- is lost); the scheduler sends those due and marks them.
CREATE TABLE directory_reminders (
    appointment_id INTEGER PRIMARY KEY,
    due_ms         INTEGER NOT NULL,
    sent_ms        INTEGER
);
CREATE INDEX directory_reminders_due ON directory_reminders (sent_ms, due_ms);
