-- A call's record is written when the call is answered (in_progress = 1) and completed
-- when it ends (in_progress = 0). Records a crash left open are closed at the next
-- start-up with the reason `crash` or `server-restart`.
ALTER TABLE calls ADD COLUMN in_progress INTEGER NOT NULL DEFAULT 0;
CREATE INDEX calls_in_progress ON calls (in_progress) WHERE in_progress = 1;
