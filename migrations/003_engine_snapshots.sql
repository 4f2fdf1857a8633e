-- The seed's snapshot table, exactly: one row, the head of the latest snapshot, UPSERTed on every snapshot.
CREATE TABLE engine_snapshots (
  id INTEGER PRIMARY KEY DEFAULT 1,
  snapshot_data JSONB NOT NULL,
  created_at TIMESTAMP DEFAULT NOW(),
  CONSTRAINT single_row CHECK (id = 1)
);

-- The snapshot body: the engine's binary encoding (~80 MB at 1M open trades and 1M remembered requests, too big
-- for one JSONB value) split into chunks. The head names its generation; a save writes a new generation, moves the
-- head and deletes older ones in one transaction, so readers only ever see one complete snapshot.
CREATE TABLE engine_snapshot_chunks (
  generation bigint NOT NULL,
  idx int NOT NULL,
  data bytea NOT NULL,
  PRIMARY KEY (generation, idx)
);
