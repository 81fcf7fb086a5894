DELETE FROM snapshot_files WHERE snapshot_id = $snapshot_id
