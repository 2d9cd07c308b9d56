-- The first event of every stream, indexed by stream id in byte order: lists the
-- streams of one kind (`manager-…`) without scanning the log
-- (EventStore::stream_ids_with_prefix; the command side's directory of managers).
CREATE INDEX events_stream_heads_idx ON events (stream_id text_pattern_ops) WHERE stream_version = 1;
