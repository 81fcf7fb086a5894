-- Deletes one source's indexed documents in scope $options (after del_near_dup_bands).
DELETE FROM near_dup_docs
WHERE options = $options AND source_sha256 = $sha256
