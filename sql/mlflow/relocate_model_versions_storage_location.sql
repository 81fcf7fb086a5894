-- A moved or copied home: point model_versions.storage_location under the old artifact root ($old, URI or path form) at this home's ($new).
UPDATE model_versions
SET storage_location = $new || substr(storage_location, length($old) + 1)
WHERE substr(storage_location, 1, length($old)) = $old
