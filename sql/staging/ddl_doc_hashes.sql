-- Every kept document's id per source and options: the memory of exact deduplication across ingests.
CREATE TABLE IF NOT EXISTS doc_hashes (
    doc_id VARCHAR NOT NULL,
    source_sha256 VARCHAR NOT NULL,
    options VARCHAR NOT NULL
)
