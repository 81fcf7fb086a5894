-- One row per sentence of the latest snapshot's documents.
CREATE OR REPLACE VIEW sentences AS
SELECT d.doc_id, d.split, d.lang, s.sent_idx - 1 AS sent_idx, s.text
FROM documents AS d,
     unnest(d.sentences) WITH ORDINALITY AS s(text, sent_idx)
