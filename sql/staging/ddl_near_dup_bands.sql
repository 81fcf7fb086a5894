-- LSH band hashes of the documents in near_dup_docs (one row per band): equal hashes make candidates.
CREATE TABLE IF NOT EXISTS near_dup_bands (
    seq BIGINT NOT NULL,
    band SMALLINT NOT NULL,
    hash UBIGINT NOT NULL
)
