-- Input units that could not become documents, with their raw bytes kept verbatim.
CREATE TABLE IF NOT EXISTS quarantine (
    source_sha256 VARCHAR NOT NULL,
    options VARCHAR NOT NULL,
    position BIGINT NOT NULL,
    reason VARCHAR NOT NULL,
    raw BLOB
)
