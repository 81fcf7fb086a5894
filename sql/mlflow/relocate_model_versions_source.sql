-- A moved or copied home: point model_versions.source under the old artifact root ($old, URI or path form) at this home's ($new).
UPDATE model_versions
SET source = $new || substr(source, length($old) + 1)
WHERE substr(source, 1, length($old)) = $old
