-- Deletes one source's cluster rows in scope $options.
DELETE FROM near_duplicates
WHERE options = $options AND source_sha256 = $sha256
