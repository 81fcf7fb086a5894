-- Appends the band hashes of kept documents (registered relation `near_dup_bands_batch`).
INSERT INTO near_dup_bands (seq, band, hash)
SELECT b.seq, b.band, b.hash
FROM near_dup_bands_batch AS b
