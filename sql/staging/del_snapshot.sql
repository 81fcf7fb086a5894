DELETE FROM snapshots WHERE snapshot_id = $snapshot_id
