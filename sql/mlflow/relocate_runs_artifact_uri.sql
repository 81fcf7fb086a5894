-- A moved or copied home: point runs.artifact_uri under the old artifact root ($old, URI or path form) at this home's ($new).
UPDATE runs
SET artifact_uri = $new || substr(artifact_uri, length($old) + 1)
WHERE substr(artifact_uri, 1, length($old)) = $old
