-- Artifact roots of plm experiments that are not this home's (the home was moved or copied): `file://<old home>/mlartifacts`.
SELECT DISTINCT artifact_location
FROM experiments
WHERE artifact_location LIKE 'file://%/mlartifacts'
  AND artifact_location <> $root
