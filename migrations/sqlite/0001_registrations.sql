-- SIP registrar bindings (RFC 3261 §10.3); survive restarts.
CREATE TABLE registrations (
    aor         TEXT    NOT NULL,
    contact     TEXT    NOT NULL,
    expires_at  INTEGER NOT NULL,   -- unix milliseconds
    q           REAL,
    call_id     TEXT    NOT NULL,
    cseq        INTEGER NOT NULL,
    source      TEXT    NOT NULL,   -- address the REGISTER came from (NAT, connection reuse)
    transport   TEXT    NOT NULL,
    user_agent  TEXT,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (aor, contact)
);
CREATE INDEX registrations_expires ON registrations (expires_at);

-- Security-relevant events (bans, failed logins, reveals of callers' data).
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    detail      TEXT    NOT NULL
);
