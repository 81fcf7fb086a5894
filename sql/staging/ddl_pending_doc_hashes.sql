-- Kept documents' ids of the source being ingested, written batch by batch (short transactions, so memory
-- stays bounded) and moved into doc_hashes by the source's commit; any row left here at the start of an
-- ingest belongs to a source a killed run never committed and is deleted.
CREATE TABLE IF NOT EXISTS pending_doc_hashes (
    doc_id VARCHAR NOT NULL,
    source_sha256 VARCHAR NOT NULL,
    options VARCHAR NOT NULL
)
