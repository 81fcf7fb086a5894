-- Catalogs written before ingests were streamed in parts have one `lake_file` column; add the parts list.
ALTER TABLE sources ADD COLUMN IF NOT EXISTS lake_files VARCHAR[]
