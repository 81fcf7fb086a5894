-- A moved or copied home: point logged_models.artifact_location under the old artifact root ($old, URI or path form) at this home's ($new).
UPDATE logged_models
SET artifact_location = $new || substr(artifact_location, length($old) + 1)
WHERE substr(artifact_location, 1, length($old)) = $old
