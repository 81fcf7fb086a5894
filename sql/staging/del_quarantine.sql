DELETE FROM quarantine WHERE source_sha256 = $sha256 AND options = $options
