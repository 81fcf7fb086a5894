-- Recorded derived lake files among $files.
SELECT f.file, f.dropped_docs, f.dropped_sentences, f.dropped_chars
FROM derived_files AS f
WHERE list_contains($files, f.file)
ORDER BY f.file
