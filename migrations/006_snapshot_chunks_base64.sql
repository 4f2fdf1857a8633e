-- Snapshot chunks as base64 text instead of bytea. The driver reads results as text only, so Postgres encoded
-- every bytea chunk on every load (hex, or base64 when asked): ~0.25 s of its CPU at 1M open trades, during
-- recovery, on a core the decode needs. Text is sent as it is stored. Still without compression (005); existing
-- chunks are converted (Postgres' base64 breaks lines every 76 characters: removed).
ALTER TABLE engine_snapshot_chunks
  ALTER COLUMN data TYPE text USING translate(encode(data, 'base64'), E'\n', ''),
  ALTER COLUMN data SET STORAGE EXTERNAL;
