-- A call's record is written when the call is answered (in_progress = true) and
-- completed when it ends (in_progress = false). Records a crash left open are closed at
-- the next start-up with the reason `crash` or `server-restart`.
ALTER TABLE calls ADD COLUMN in_progress BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX calls_in_progress ON calls (in_progress) WHERE in_progress;
