-- Quality review of answers (H-15, H-17-3/4): a sampled recorded call or web answer,
-- its reviewer's marks and comment, and the reviewed person's one appeal.
-- id = '<subject_kind>:<subject_id>': a subject is sampled once.
CREATE TABLE quality_reviews (
    id            TEXT    PRIMARY KEY,
    subject_kind  TEXT    NOT NULL,        -- call | web_answer
    subject_id    TEXT    NOT NULL,        -- call id or order id
    subject_ms    INTEGER    NOT NULL,        -- the call's arrival or the order's receipt
    person        TEXT    NOT NULL,        -- the reviewed user (or agent:<ext>)
    unit          TEXT    NOT NULL,
    city          TEXT    NOT NULL,
    reason        TEXT    NOT NULL,        -- dissatisfied | complaint | long_call | random
    sampled_by    TEXT    NOT NULL,
    sampled_ms    INTEGER    NOT NULL,
    reviewer      TEXT,
    scored_ms     INTEGER,
    marks         TEXT,                    -- JSON: item key -> 0..100
    score_tenths  INTEGER,                    -- 0..1000
    comment       TEXT,
    appeal        TEXT,
    appealed_ms   INTEGER
);
CREATE INDEX quality_reviews_person ON quality_reviews (person);
CREATE INDEX quality_reviews_subject_ms ON quality_reviews (subject_ms);
