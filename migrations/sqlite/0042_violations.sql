-- Violations and rectification (H-16, H-17): the register of faults, each with its
-- rectification deadline (限期整改) counted on the working-day calendar, and when and
-- how it was rectified. Rows are never deleted.
CREATE TABLE violations (
    id             TEXT    PRIMARY KEY,
    unit           TEXT    NOT NULL,
    person         TEXT,
    kind           TEXT    NOT NULL,
    description    TEXT    NOT NULL,
    registered_by  TEXT    NOT NULL,
    registered_ms  INTEGER    NOT NULL,
    working_days   INTEGER    NOT NULL,
    due_ms         INTEGER    NOT NULL,
    due_text       TEXT    NOT NULL,   -- as a bureau writes it
    done_ms        INTEGER,
    done_by        TEXT,
    rectification  TEXT
);
CREATE INDEX violations_registered ON violations (registered_ms);
