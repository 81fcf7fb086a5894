-- Lake files derived for a snapshot from one source's parts (its cross-source duplicates left out): the name is
-- content-addressed, so a file present with its row here is reused; what it left out is counted here.
CREATE TABLE IF NOT EXISTS derived_files (
    file VARCHAR PRIMARY KEY,
    source_sha256 VARCHAR NOT NULL,
    options VARCHAR NOT NULL,
    dropped_docs BIGINT NOT NULL,
    dropped_sentences BIGINT NOT NULL,
    dropped_chars BIGINT NOT NULL
)
