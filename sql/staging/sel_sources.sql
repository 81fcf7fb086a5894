-- Catalog rows of the given sources ($sha256s) processed with $options, in path order.
SELECT *
FROM sources
WHERE options = $options AND list_contains($sha256s, sha256)
ORDER BY path
