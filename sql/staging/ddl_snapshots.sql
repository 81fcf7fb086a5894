-- One row per completed ingest: a snapshot is a set of sources processed with one set of options.
CREATE TABLE IF NOT EXISTS snapshots (
    snapshot_id VARCHAR NOT NULL,
    options VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    counts VARCHAR NOT NULL  -- JSON object of IngestResult.counts
)
