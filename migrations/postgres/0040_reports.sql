-- Published reports (H-15, W-19, W-20): one row per period, made once after the period
-- ends by the server's report scheduler (nobody types a figure). `data` is the report's
-- JSON (the API's own answers for that period); the XLSX and HTML files are under
-- <data_dir>/reports/, named here relative to it.
CREATE TABLE reports (
    id           TEXT    PRIMARY KEY,   -- the period: 2026-11, 2026-Q4 or 2026
    kind         TEXT    NOT NULL,      -- month | quarter | year
    period_from_ms BIGINT NOT NULL,
    period_to_ms   BIGINT NOT NULL,
    generated_ms   BIGINT NOT NULL,
    data         TEXT    NOT NULL,
    xlsx_file    TEXT    NOT NULL,
    html_file    TEXT    NOT NULL
);
