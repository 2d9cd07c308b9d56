ALTER TABLE rm_complaints ADD COLUMN first_response_due_us BIGINT;
ALTER TABLE rm_complaints ADD COLUMN resolution_due_us BIGINT;
