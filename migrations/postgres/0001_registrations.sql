-- SIP registrar bindings (RFC 3261 §10.3); survive restarts.
CREATE TABLE registrations (
    aor         TEXT    NOT NULL,
    contact     TEXT    NOT NULL,
    expires_at  BIGINT  NOT NULL,   -- unix milliseconds
    q           DOUBLE PRECISION,
    call_id     TEXT    NOT NULL,
    cseq        BIGINT  NOT NULL,
    source      TEXT    NOT NULL,   -- address the REGISTER came from (NAT, connection reuse)
    transport   TEXT    NOT NULL,
    user_agent  TEXT,
    updated_at  BIGINT  NOT NULL,
    PRIMARY KEY (aor, contact)
);
CREATE INDEX registrations_expires ON registrations (expires_at);

-- Security-relevant events (bans, failed logins, reveals of callers' data).
CREATE TABLE audit_log (
    id          BIGSERIAL PRIMARY KEY,
    at          BIGINT  NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    detail      TEXT    NOT NULL
);
