-- ACD event log (queue_log style, append-only): agent sign-in/out, pauses, offline,
-- call enter/connect/complete/abandon/overflow... One row per ACD `Log` action; the
-- sign-in rate (AS-METRICS) is rebuilt from the sign_in/sign_out/offline/online rows.
CREATE TABLE queue_log (
    id        BIGSERIAL PRIMARY KEY,
    at_ms     BIGINT  NOT NULL,   -- unix milliseconds
    at        TEXT    NOT NULL,   -- RFC 3339, +08:00
    queue     TEXT    NOT NULL,   -- city
    call_id   TEXT,
    agent     TEXT,
    event     TEXT    NOT NULL,   -- sign_in, sign_out, pause, connect, abandon, ...
    detail    TEXT    NOT NULL    -- the whole row as JSON
);
CREATE INDEX queue_log_agent ON queue_log (agent, at_ms);
CREATE INDEX queue_log_queue ON queue_log (queue, at_ms);
