-- Deletes the band hashes of one source's documents in scope $options (before re-processing it).
DELETE FROM near_dup_bands
WHERE seq IN (SELECT seq FROM near_dup_docs WHERE options = $options AND source_sha256 = $sha256)
