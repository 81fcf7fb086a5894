-- The end of a ranged commit: its temporary table of kept ids goes.
DROP TABLE IF EXISTS range_kept
