-- Empties pending_doc_hashes: after a source's commit moved its rows, or at the start of an ingest.
DELETE FROM pending_doc_hashes
