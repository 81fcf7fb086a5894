-- The lake files (names under lake/documents/) that make up each snapshot.
CREATE TABLE IF NOT EXISTS snapshot_files (
    snapshot_id VARCHAR NOT NULL,
    file VARCHAR NOT NULL
)
