INSERT INTO sources (
    path, sha256, bytes, format, encoding, status, rows_read, rows_kept, rows_duplicate, rows_filtered,
    rows_quarantined, sentences, chars, reasons, lake_files, snapshot_id, options
)
VALUES (
    $path, $sha256, $bytes, $format, $encoding, $status, $rows_read, $rows_kept, $rows_duplicate, $rows_filtered,
    $rows_quarantined, $sentences, $chars, $reasons, $lake_files, $snapshot_id, $options
)
