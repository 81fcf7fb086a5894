DELETE FROM doc_hashes WHERE source_sha256 = $sha256 AND options = $options
