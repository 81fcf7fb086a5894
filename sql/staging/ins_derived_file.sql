-- Records one derived lake file (written and renamed into place before this runs).
INSERT OR REPLACE INTO derived_files (file, source_sha256, options, dropped_docs, dropped_sentences, dropped_chars)
VALUES ($file, $sha256, $options, $dropped_docs, $dropped_sentences, $dropped_chars)
