-- The ids of one staged part of a later range (registered relation `range_ids`) that an earlier range of the same
-- file kept: exact duplicates within the source.
SELECT DISTINCT r.doc_id
FROM range_ids AS r
WHERE r.doc_id IN (SELECT k.doc_id FROM range_kept AS k)
