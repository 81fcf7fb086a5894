-- Quarantine rows of the source being ingested, batch by batch, until its commit moves them into quarantine.
CREATE TABLE IF NOT EXISTS pending_quarantine (
    source_sha256 VARCHAR NOT NULL,
    options VARCHAR NOT NULL,
    position BIGINT NOT NULL,
    reason VARCHAR NOT NULL,
    raw BLOB
)
