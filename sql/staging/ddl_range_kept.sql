-- Inside the commit of a file mapped in byte ranges: the ids each range's map step kept (before near-dup), so the
-- documents of a later range that an earlier range already kept are dropped as `duplicate`, as reading the file whole
-- drops them (dedup within a source); a temporary table of the committing connection (DuckDB spills it).
CREATE OR REPLACE TEMP TABLE range_kept (doc_id VARCHAR NOT NULL)
