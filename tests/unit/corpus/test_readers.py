import bz2
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from plm.corpus.readers import compression, detect_encoding, detect_format, read_records

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "corpus"


def test_text_units():
    path = ASSETS / "paragraphs.txt"
    assert [r.raw for r in read_records(path, "txt", "file")] == [path.read_text()]
    paragraphs = [r.raw for r in read_records(path, "txt", "paragraph")]
    assert paragraphs == [
        "The first paragraph has two lines\nthat belong together.",
        "The second paragraph stands alone.",
        "The third paragraph follows two blank lines.\n",
    ]
    lines = list(read_records(path, "txt", "line"))
    assert [r.position for r in lines] == [0, 1, 2, 3]  # blank lines are not records
    assert lines[1].raw == "that belong together."


def test_jsonl_bad_lines_are_quarantined_with_reasons():
    records = list(read_records(ASSETS / "docs.jsonl", "jsonl", field="text"))
    assert [(r.position, r.reason) for r in records] == [(0, None), (1, "invalid_json"), (2, "missing_field"), (3, None)]
    assert records[0].title == "one"
    assert records[1].raw == b'{"text": oops not json}\n'


def test_gzip_and_bom_and_undecodable(tmp_path):
    path = tmp_path / "corpus.txt.gz"
    path.write_bytes(gzip.compress("\ufeffFirst line here.\n".encode() + b"bad \xff\xfe bytes\n"))
    assert compression(path) == "gz"
    assert detect_format(path) == "txt"
    assert detect_encoding(path, "txt") == "utf-8-sig"
    records = list(read_records(path, "txt", "line"))
    assert records[0].raw == "First line here." and records[0].reason is None
    assert records[1].reason == "undecodable" and records[1].raw == b"bad \xff\xfe bytes"


def test_format_detection_by_content(tmp_path):
    jl = tmp_path / "noext"
    jl.write_text(json.dumps({"text": "x"}) + "\n")
    assert detect_format(jl) == "jsonl"
    wiki = tmp_path / "dump.xml.bz2"
    wiki.write_bytes(bz2.compress((ASSETS / "tiny_wiki.xml").read_bytes()))
    assert compression(wiki) == "bz2"
    assert detect_format(wiki) == "mediawiki"
    pqf = tmp_path / "data.bin"
    pq.write_table(pa.table({"text": ["a"]}), pqf)
    assert detect_format(pqf) == "parquet"


def test_mediawiki_keeps_only_articles_and_strips_markup(tmp_path):
    records = list(read_records(ASSETS / "tiny_wiki.xml", "mediawiki"))
    assert [(r.position, r.title) for r in records] == [(0, "Alpha"), (3, "Beta")]  # redirect and Talk: skipped
    alpha = records[0].raw
    assert "Alpha is the first letter of the Greek alphabet." in alpha
    assert "It was borrowed from Phoenician." in alpha
    for noise in ("[[", "'''", "{{", "footnote", "Category", "<ref"):
        assert noise not in alpha
    compressed = tmp_path / "dump.xml.bz2"
    compressed.write_bytes(bz2.compress((ASSETS / "tiny_wiki.xml").read_bytes()))
    assert list(read_records(compressed, "mediawiki")) == records


def test_mediawiki_truncated_dump_is_quarantined(tmp_path):
    path = tmp_path / "cut.xml"
    path.write_bytes((ASSETS / "tiny_wiki.xml").read_bytes()[:-200])
    records = list(read_records(path, "mediawiki"))
    assert [r.title for r in records if r.reason is None] == ["Alpha"]
    assert records[-1].reason == "invalid_xml"


def test_csv_and_parquet(tmp_path):
    csv_path = tmp_path / "d.csv"
    csv_path.write_text('id,text\n1,"Hello, world"\n2,Second row\n')
    assert [r.raw for r in read_records(csv_path, "csv", field="text")] == ["Hello, world", "Second row"]
    with pytest.raises(ValueError, match="no column 'body'"):
        list(read_records(csv_path, "csv", field="body"))
    pq_path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": ["one", None], "title": ["T", None]}), pq_path)
    records = list(read_records(pq_path, "parquet", field="text"))
    assert (records[0].title, records[0].raw) == ("T", "one")
    assert records[1].reason == "missing_field"
