-- Events imported with their positions from another store (an audit export of a
-- PostgreSQL store: `crm audit export`). There the global log is ordered by
-- (transaction id, position); `source_tx` keeps the transaction id, and `log_tx` is
-- what this store orders by: the source's transaction id, or the position itself for
-- events appended here (where tx == position).

ALTER TABLE events ADD COLUMN source_tx INTEGER;
ALTER TABLE events ADD COLUMN log_tx INTEGER GENERATED ALWAYS AS (coalesce(source_tx, position)) VIRTUAL;
CREATE INDEX events_log_order_idx ON events (log_tx, position);
