-- Snapshot chunks are stored as they are, without Postgres' own compression (pglz): it shrank a 1M-trade snapshot
-- by a third but cost the database ~0.1 s of CPU on every load (during recovery, on a core the decode needs) and
-- more on every save. Applies to chunks written from now on.
ALTER TABLE engine_snapshot_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
