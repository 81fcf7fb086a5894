-- Inside a source's commit: one quarantine row written by the commit itself (`empty_file` for a file mapped in byte
-- ranges none of which held a record: read whole, its reader would have given that row).
INSERT INTO quarantine (source_sha256, options, position, reason, raw)
VALUES ($sha256, $options, $position, $reason, $raw)
