-- Appends the registered relation `quarantine_batch` (position, reason, raw) for one source.
INSERT INTO quarantine (source_sha256, options, position, reason, raw)
SELECT $sha256, $options, q.position, q.reason, q.raw
FROM quarantine_batch AS q
