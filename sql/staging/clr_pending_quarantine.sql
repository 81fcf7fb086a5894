-- Empties pending_quarantine: after a source's commit moved its rows, or at the start of an ingest.
DELETE FROM pending_quarantine
