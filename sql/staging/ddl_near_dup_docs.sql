-- Documents kept by near-duplicate detection, the representatives later documents are compared with.
-- seq orders them by first sight (the smallest seq of a cluster is its representative); options names
-- the processing options and MinHash scheme, so indexes built with other settings are never mixed.
CREATE TABLE IF NOT EXISTS near_dup_docs (
    seq BIGINT NOT NULL,
    doc_id VARCHAR NOT NULL,
    source_sha256 VARCHAR NOT NULL,
    options VARCHAR NOT NULL,
    signature BLOB NOT NULL
)
