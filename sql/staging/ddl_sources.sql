-- One row per (source content, processing options): what was read, kept and dropped by the source on its own
-- (a snapshot may drop more of its documents as duplicates of another of its sources: see `snapshots.counts`). A row is written in the
-- same transaction as the source's quarantine and doc_hashes rows, after its lake parts are in place.
CREATE TABLE IF NOT EXISTS sources (
    path VARCHAR NOT NULL,
    sha256 VARCHAR NOT NULL,
    bytes BIGINT NOT NULL,
    format VARCHAR NOT NULL,
    encoding VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    rows_read BIGINT NOT NULL,
    rows_kept BIGINT NOT NULL,
    rows_duplicate BIGINT NOT NULL,
    rows_filtered BIGINT NOT NULL,
    rows_quarantined BIGINT NOT NULL,
    sentences BIGINT NOT NULL,
    chars BIGINT NOT NULL,
    reasons VARCHAR NOT NULL,  -- JSON object: reason -> count
    lake_files VARCHAR[],      -- part file names under lake/documents/, empty when nothing was kept
    ingested_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    snapshot_id VARCHAR NOT NULL,
    options VARCHAR NOT NULL,
    PRIMARY KEY (sha256, options)
)
