-- Every document id a source kept on its own, per source and options: what `quality/dedup_snapshot` reads to drop
-- exact duplicates across the sources of one snapshot.
CREATE TABLE IF NOT EXISTS doc_hashes (
    doc_id VARCHAR NOT NULL,
    source_sha256 VARCHAR NOT NULL,
    options VARCHAR NOT NULL
)
