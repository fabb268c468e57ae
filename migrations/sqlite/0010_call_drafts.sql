-- The agent's draft work order for a live call (TK-FIELDS), autosaved by the agent
-- console while the call goes on and linked to the call id. Deleted when the order is
-- created from it; drafts older than 7 days are purged on the next save.
CREATE TABLE call_drafts (
    call_id    TEXT    NOT NULL PRIMARY KEY,
    user_id    TEXT    NOT NULL,   -- the console user who writes it
    fields     TEXT    NOT NULL,   -- the form as JSON
    updated_ms INTEGER NOT NULL    -- unix milliseconds
);
CREATE INDEX call_drafts_updated ON call_drafts (updated_ms);
