-- Inside the source's commit: its pending quarantine rows become visible in quarantine.
INSERT INTO quarantine (source_sha256, options, position, reason, raw)
SELECT p.source_sha256, p.options, p.position, p.reason, p.raw
FROM pending_quarantine AS p
WHERE p.source_sha256 = $sha256 AND p.options = $options
