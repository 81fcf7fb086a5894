-- Appends the registered relation `snapshot_batch` (file) as the files of $snapshot_id.
INSERT INTO snapshot_files (snapshot_id, file)
SELECT $snapshot_id, b.file FROM snapshot_batch AS b
