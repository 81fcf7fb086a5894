import time

import pytest

from plm.config import CorpusSpec
from plm.corpus.ingest import connect_catalog, ingest_corpus


def test_ingest_ko_constitution(tmp_path):
    pytest.importorskip("konlpy")
    start = time.monotonic()
    result = ingest_corpus(CorpusSpec(paths=["sample:ko-constitution"], text_unit="line"), tmp_path)
    assert time.monotonic() - start < 30
    c = result.counts
    assert c["rows_read"] == c["rows_kept"] + c["rows_duplicate"] + c["rows_filtered"] + c["rows_quarantined"]
    assert c["rows_quarantined"] == 0 and c["documents"] > 100 and c["sentences"] >= c["documents"]
    con = connect_catalog(tmp_path, read_only=True)
    assert con.execute("SELECT DISTINCT lang FROM documents").fetchall() == [("ko",)]
    first = con.execute("SELECT text FROM documents ORDER BY position LIMIT 1").fetchone()[0]
    assert first.startswith("유구한 역사와 전통에")  # the title line "대한민국헌법" is too_short
    assert result.reasons.get("too_short", 0) >= 1
    con.close()
