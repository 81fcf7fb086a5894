DELETE FROM sources WHERE sha256 = $sha256 AND options = $options
