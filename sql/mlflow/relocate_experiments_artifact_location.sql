-- A moved or copied home: point experiments.artifact_location under the old artifact root ($old, URI or path form) at this home's ($new).
UPDATE experiments
SET artifact_location = $new || substr(artifact_location, length($old) + 1)
WHERE substr(artifact_location, 1, length($old)) = $old
