INSERT INTO snapshots (snapshot_id, options, counts) VALUES ($snapshot_id, $options, $counts)
