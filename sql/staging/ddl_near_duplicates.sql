-- The clusters: every document dropped as a near-duplicate, with the kept document it resembles.
CREATE TABLE IF NOT EXISTS near_duplicates (
    doc_id VARCHAR NOT NULL,
    representative_doc_id VARCHAR NOT NULL,
    similarity DOUBLE NOT NULL,
    source_sha256 VARCHAR NOT NULL,
    options VARCHAR NOT NULL
)
