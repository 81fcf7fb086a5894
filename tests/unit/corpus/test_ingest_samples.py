from pathlib import Path

import pytest

from plm.config import CorpusSpec
from plm.corpus.ingest import connect_catalog, ingest_corpus


def test_ingest_ko_constitution(tmp_path):
    pytest.importorskip("konlpy")
    result = ingest_corpus(CorpusSpec(paths=["sample:ko-constitution"], text_unit="line"), tmp_path)
    c = result.counts
    assert c["rows_read"] == c["rows_kept"] + c["rows_duplicate"] + c["rows_filtered"] + c["rows_quarantined"]
    assert c["rows_quarantined"] == 0 and c["documents"] > 100 and c["sentences"] >= c["documents"]
    con = connect_catalog(tmp_path, read_only=True)
    assert con.execute("SELECT DISTINCT lang FROM documents").fetchall() == [("ko",)]
    first = con.execute("SELECT text FROM documents ORDER BY position LIMIT 1").fetchone()[0]
    assert first.startswith("유구한 역사와 전통에")  # the title line "대한민국헌법" is too_short
    assert result.reasons.get("too_short", 0) >= 1
    con.close()


ASSETS = Path(__file__).resolve().parents[2] / "assets"


def assert_accounted(home: Path, result) -> None:
    """The identity per source and in total, and the catalog agreeing with the counts row by row."""
    c = result.counts
    assert c["rows_read"] == c["rows_kept"] + c["rows_duplicate"] + c["rows_filtered"] + c["rows_quarantined"] > 0
    assert sum(result.reasons.values()) == c["rows_duplicate"] + c["rows_filtered"] + c["rows_quarantined"]
    con = connect_catalog(home, read_only=True)
    try:
        for row in result.sources:
            assert row["rows_read"] == (row["rows_kept"] + row["rows_duplicate"] + row["rows_filtered"]
                                        + row["rows_quarantined"]), row["path"]
            kept = con.execute("SELECT count(*) FROM documents WHERE source_sha256 = ?", [row["sha256"]]).fetchone()[0]
            held = con.execute("SELECT count(*) FROM quarantine WHERE source_sha256 = ? AND options = ?",
                               [row["sha256"], row["options"]]).fetchone()[0]
            assert (kept, held) == (row["rows_kept"], row["rows_quarantined"]), row["path"]
        assert con.execute("SELECT count(*), count(DISTINCT doc_id) FROM documents").fetchone() == (c["documents"],) * 2
    finally:
        con.close()


# sample:enwiki is left to the reader tests: its MediaWiki markup parsing alone takes a minute here.
@pytest.mark.parametrize("paths", [["sample:lee"], ["sample:ko-constitution", "sample:ko-bills"], ["corpus"]])
def test_accounting_identity_on_every_sample_corpus(tmp_path, paths):
    if any(p.startswith("sample:ko") for p in paths):
        pytest.importorskip("konlpy")
    if paths == ["sample:lee"]:
        pytest.importorskip("gensim")
    paths = [str(ASSETS / p) if not p.startswith("sample:") else p for p in paths]
    cfg = CorpusSpec(paths=paths, text_unit="paragraph", near_dup=True, batch_records=500)
    result = ingest_corpus(cfg, tmp_path)
    assert_accounted(tmp_path, result)
    assert result.counts["rows_kept"] > 0


def test_accounting_identity_on_hostile_input(tmp_path):
    hostile = ASSETS / "hostile"
    files = sorted(str(p) for p in hostile.iterdir() if p.suffix != ".py")
    cfg = CorpusSpec(paths=files, allowed_roots=[str(hostile)], max_quarantined_fraction=1.0)
    result = ingest_corpus(cfg, tmp_path)
    assert_accounted(tmp_path, result)
    # every hostile file that yields no document still has its catalog row and its reasons
    assert len(result.sources) == len(files) and result.counts["rows_quarantined"] >= len(files) // 2
    quarantined = {r["path"] for r in result.sources if r["rows_quarantined"]}
    assert str(hostile / "empty.txt") in quarantined and str(hostile / "binary.txt") in quarantined


GOPHER_REASONS = {"too_few_words", "too_many_words", "mean_word_length", "symbol_words", "alpha_words",
                  "repeated_paragraphs", "top_ngram", "duplicate_ngrams"}


@pytest.mark.parametrize(("paths", "unit"), [
    (["sample:enwiki", "sample:ko-constitution", "sample:ko-bills"], "file"),  # the quickstart corpus
    (["sample:ko-constitution"], "line"),   # Korean articles one per line: `제1조 ① 대한민국은 민주공화국이다.`
    (["sample:lee", "sample:polarity"], "line"),  # news sentences and movie reviews, short ones (~10 words) included
])
def test_the_gopher_defaults_keep_every_prose_document_of_the_samples(tmp_path, paths, unit):
    pytest.importorskip("gensim")
    pytest.importorskip("konlpy")
    result = ingest_corpus(CorpusSpec(paths=paths, text_unit=unit, korean_sentences="regex"), tmp_path)
    assert not GOPHER_REASONS & set(result.reasons), result.reasons
    assert result.counts["documents"] > 50
