-- Appends one batch's quarantined units (registered relation `quarantine_batch`) for the source in flight.
INSERT INTO pending_quarantine (source_sha256, options, position, reason, raw)
SELECT $sha256, $options, q.position, q.reason, q.raw
FROM quarantine_batch AS q
