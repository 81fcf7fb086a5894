import bz2
import gzip
import json
import lzma
import os
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from plm.config import CorpusSpec
from plm.corpus.readers import (
    check_allowed, compression, detect_encoding, detect_format, read_records, sniff_encoding,
)

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "corpus"
KOREAN = "대한민국은 민주공화국이다.\n대한민국의 주권은 국민에게 있고, 모든 권력은 국민으로부터 나온다.\n제2조 국민의 요건은 법률로 정한다.\n"


def spec(**kw) -> CorpusSpec:
    return CorpusSpec(**kw)


def test_text_units():
    path = ASSETS / "paragraphs.txt"
    assert [r.raw for r in read_records(path, "txt", spec(text_unit="file"))] == [path.read_text()]
    paragraphs = [r.raw for r in read_records(path, "txt", spec(text_unit="paragraph"))]
    assert paragraphs == [
        "The first paragraph has two lines\nthat belong together.",
        "The second paragraph stands alone.",
        "The third paragraph follows two blank lines.",
    ]
    lines = list(read_records(path, "txt", spec(text_unit="line")))
    assert [r.position for r in lines] == [0, 1, 2, 3]  # blank lines are not records
    assert lines[1].raw == "that belong together."


def test_jsonl_bad_lines_are_quarantined_with_reasons():
    records = list(read_records(ASSETS / "docs.jsonl", "jsonl", spec()))
    assert [(r.position, r.reason) for r in records] == [(0, None), (1, "invalid_json"), (2, "missing_field"), (3, None)]
    assert records[0].title == "one"
    assert records[1].raw == b'{"text": oops not json}\n'


def test_gzip_and_bom_and_undecodable(tmp_path):
    path = tmp_path / "corpus.txt.gz"
    path.write_bytes(gzip.compress("\ufeffFirst line here.\n".encode() + b"bad \xff\xfe bytes\n"))
    assert compression(path) == "gz"
    assert detect_format(path) == "txt"
    assert detect_encoding(path, "txt") == "utf-8-sig"
    records = list(read_records(path, "txt", spec(text_unit="line")))
    assert records[0].raw == "First line here." and records[0].reason is None
    assert records[1].reason == "undecodable:utf-8-sig" and records[1].raw == b"bad \xff\xfe bytes"


@pytest.mark.parametrize("codec", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le-bom", "utf-16-be-bom", "cp949", "euc-kr"])
def test_same_korean_text_in_every_encoding(tmp_path, codec):
    data = {
        "utf-16-le-bom": b"\xff\xfe" + KOREAN.encode("utf-16-le"),
        "utf-16-be-bom": b"\xfe\xff" + KOREAN.encode("utf-16-be"),
    }.get(codec) or KOREAN.encode(codec)
    path = tmp_path / "ko.txt"
    path.write_bytes(data)
    for unit in ("line", "paragraph", "file"):
        records = list(read_records(path, "txt", spec(text_unit=unit)))
        assert all(r.reason is None for r in records)
        text = "\n".join(r.raw for r in records)
        assert text.strip("\n") == KOREAN.strip("\n"), (codec, unit)
    expected = {"utf-8": "utf-8", "utf-8-sig": "utf-8-sig", "cp949": "cp949", "euc-kr": "cp949"}
    assert detect_encoding(path, "txt") == expected.get(codec, "utf-16-be" if "be" in codec else "utf-16-le")


def test_cp949_invalid_sequence_quarantines_exactly_that_line(tmp_path):
    lines = KOREAN.encode("cp949").split(b"\n")
    bad = lines[1][:6] + b"\x80\x20" + lines[1][6:]  # 0x80 is no CP949 lead byte
    path = tmp_path / "legacy.txt"
    path.write_bytes(b"\n".join([lines[0], bad, lines[2], b""]))
    records = list(read_records(path, "txt", spec(text_unit="line")))
    assert [r.reason for r in records] == [None, "undecodable:cp949", None]
    assert records[1].raw == bad  # the raw bytes, never replaced
    assert records[2].raw == "제2조 국민의 요건은 법률로 정한다."


def test_forced_encoding_and_undecodable_utf16(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("café au lait\nnaïve\n".encode("latin-1"))
    records = list(read_records(path, "txt", spec(text_unit="line", encoding="latin-1")))
    assert [r.raw for r in records] == ["café au lait", "naïve"]
    assert [r.reason for r in read_records(path, "txt", spec(text_unit="line", encoding="utf-8"))] == [
        "undecodable:utf-8", "undecodable:utf-8",
    ]
    u16 = tmp_path / "u16.txt"
    bad = b"\xff\xfe" + "good line\n".encode("utf-16-le") + "bad ".encode("utf-16-le") + b"\x00\xdc" + "\n".encode("utf-16-le")
    u16.write_bytes(bad + "last line\n".encode("utf-16-le"))
    records = list(read_records(u16, "txt", spec(text_unit="line")))
    assert [r.reason for r in records] == [None, "undecodable:utf-16-le", None]
    assert records[1].raw == "bad ".encode("utf-16-le") + b"\x00\xdc"  # the exact bytes of the bad unit


@pytest.mark.parametrize("text, codec", [
    ("Ein schönes Café in Köln, naïve résumé über Äpfel.\nDie Straße ist grün und süß.\n", "latin-1"),
    ("これは日本語の文章です。東京に住んでいます。\n今日は良い天気ですね。\n", "shift_jis"),
    ("Быстрая коричневая лиса прыгает через ленивую собаку.\nПривет, мир!\n", "cp1251"),
])
def test_other_legacy_encodings_via_the_detector(tmp_path, text, codec):
    path = tmp_path / "legacy.txt"
    path.write_bytes((text * 5).encode(codec))
    assert detect_encoding(path, "txt") not in {"cp949", "utf-8"}  # Latin-1 is not taken for Korean
    assert [r.raw for r in read_records(path, "txt", spec(text_unit="line"))] == text.strip().split("\n") * 5
    assert sniff_encoding("plain ascii\n".encode()) == "utf-8"


@pytest.mark.parametrize("lines", [
    ["A plain line of the corpus.", "Une ligne en fran\u00e7ais : caf\u00e9, na\u00efve, d\u00e9j\u00e0 vu.", None,
     "Another plain line."],  # was CP949 (mojibake Hangul)
    ["A plain ASCII line of the corpus.", None, "Another plain line here."],  # was CP1250: "\u02d9\u0163\u00fd"
])
def test_a_utf8_file_with_one_invalid_line_stays_utf8(tmp_path, lines):
    path = tmp_path / "mostly_utf8.txt"
    path.write_bytes(b"\n".join(b"\xff\xfe\xfd" if line is None else line.encode() for line in lines) + b"\n")
    assert detect_encoding(path, "txt") == "utf-8"
    records = list(read_records(path, "txt", spec(text_unit="line")))
    assert [r.raw for r in records] == [b"\xff\xfe\xfd" if line is None else line for line in lines]
    assert [r.reason for r in records] == ["undecodable:utf-8" if line is None else None for line in lines]
    # a real legacy file, even a small one, still decodes with its codec
    legacy = tmp_path / "legacy.txt"
    legacy.write_bytes("Un caf\u00e9 au lait, s'il vous pla\u00eet.\nPlain.\n".encode("cp1252"))
    assert [r.raw for r in read_records(legacy, "txt", spec(text_unit="line"))] == [
        "Un caf\u00e9 au lait, s'il vous pla\u00eet.", "Plain."]


def _compressors():
    return {
        "gz": lambda b: gzip.compress(b, mtime=0),
        "bz2": bz2.compress,
        "xz": lzma.compress,
        "zst": lambda b: zstandard.ZstdCompressor().compress(b),
    }


@pytest.mark.parametrize("kind", ["gz", "bz2", "xz", "zst"])
def test_compression_detected_by_magic_bytes_not_extension(tmp_path, kind):
    compress = _compressors()[kind]
    jsonl = "".join(json.dumps({"text": f"document number {i}"}) + "\n" for i in range(5)).encode()
    misleading = tmp_path / "data.txt"  # not .gz/.bz2/...
    misleading.write_bytes(compress(jsonl))
    assert compression(misleading) == kind
    assert detect_format(misleading) == "jsonl"
    assert [r.raw for r in read_records(misleading, "jsonl", spec())] == [f"document number {i}" for i in range(5)]
    wrong = tmp_path / ("wiki.xml.gz" if kind != "gz" else "wiki.xml.bz2")  # the other codec's extension
    wrong.write_bytes(compress((ASSETS / "tiny_wiki.xml").read_bytes()))
    assert detect_format(wrong) == "mediawiki"
    assert [r.title for r in read_records(wrong, "mediawiki", spec())] == ["Alpha", "Beta"]
    multi = tmp_path / "multi.bin"  # concatenated members/frames/streams are one stream
    multi.write_bytes(compress(b"first line\n") + compress(b"second line\n"))
    assert [r.raw for r in read_records(multi, "txt", spec(text_unit="line"))] == ["first line", "second line"]


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
    arr = tmp_path / "arr.txt"
    arr.write_text(json.dumps([{"text": "one"}, {"text": "two"}], indent=2))
    assert detect_format(arr) == "json"


def test_json_array_and_single_object(tmp_path):
    arr = tmp_path / "a.json"
    arr.write_text(json.dumps([{"text": "one", "id": 7, "src": "x"}, {"body": "none"}, {"text": "three", "id": 9}]))
    records = list(read_records(arr, "json", spec(id_field="id", metadata_fields=["src"])))
    assert [(r.reason, r.raw if r.reason is None else None, r.source_id) for r in records] == [
        (None, "one", "7"), ("missing_field", None, None), (None, "three", "9"),
    ]
    assert records[0].metadata == {"src": "x"} and records[2].metadata == {}
    one = tmp_path / "o.json"
    one.write_text(json.dumps({"text": "single", "title": "T"}))
    assert [(r.title, r.raw) for r in read_records(one, "json", spec())] == [("T", "single")]


def test_mediawiki_keeps_only_articles_and_strips_markup(tmp_path):
    records = list(read_records(ASSETS / "tiny_wiki.xml", "mediawiki", spec()))
    assert [(r.position, r.title) for r in records] == [(0, "Alpha"), (3, "Beta")]  # redirect and Talk: skipped
    alpha = records[0].raw
    assert "Alpha is the first letter of the Greek alphabet." in alpha
    assert "It was borrowed from Phoenician." in alpha
    for noise in ("[[", "'''", "{{", "footnote", "Category", "<ref"):
        assert noise not in alpha
    compressed = tmp_path / "dump.xml.bz2"
    compressed.write_bytes(bz2.compress((ASSETS / "tiny_wiki.xml").read_bytes()))
    assert list(read_records(compressed, "mediawiki", spec())) == records


def test_mediawiki_truncated_dump_is_quarantined(tmp_path):
    path = tmp_path / "cut.xml"
    path.write_bytes((ASSETS / "tiny_wiki.xml").read_bytes()[:-200])
    records = list(read_records(path, "mediawiki", spec()))
    assert [r.title for r in records if r.reason is None] == ["Alpha"]
    assert records[-1].reason == "invalid_xml"


def test_csv_and_parquet(tmp_path):
    csv_path = tmp_path / "d.csv"
    csv_path.write_text('id,text\n1,"Hello, world"\n2,Second row\n')
    assert [r.raw for r in read_records(csv_path, "csv", spec())] == ["Hello, world", "Second row"]
    with pytest.raises(ValueError, match="no column 'body'"):
        list(read_records(csv_path, "csv", spec(jsonl_text_field="body")))
    pq_path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": ["one", None], "title": ["T", None], "id": [1, 2]}), pq_path)
    records = list(read_records(pq_path, "parquet", spec(id_field="id")))
    assert (records[0].title, records[0].raw, records[0].source_id) == ("T", "one", "1")
    assert records[1].reason == "missing_field"


def test_csv_delimiters_columns_and_encoding(tmp_path):
    semi = tmp_path / "d.txt"
    semi.write_text("id;text;lang\n1;first text;en\n2;second; text;en\n3;third text;en\n")
    records = list(read_records(semi, "csv", spec(id_field="id", metadata_fields=["lang"])))
    assert [r.reason for r in records] == [None, "bad_columns", None]
    assert (records[2].raw, records[2].source_id, records[2].metadata) == ("third text", "3", {"lang": "en"})
    assert records[1].raw == b"2;second; text;en\n"
    tsv = tmp_path / "d.tsv.gz"
    tsv.write_bytes(gzip.compress("text\tn\n한국어 문장\t1\n".encode("cp949") + b"\xff\xff bad\t2\n"))
    records = list(read_records(tsv, "csv", spec()))
    assert [(r.reason, r.raw) for r in records] == [(None, "한국어 문장"), ("undecodable:cp949", b"\xff\xff bad\t2\n")]
    forced = list(read_records(semi, "csv", spec(csv_delimiter="|", jsonl_text_field="id;text;lang")))
    assert forced[0].raw == "1;first text;en"


def test_too_large_units_in_every_text_mode(tmp_path):
    path = tmp_path / "big.txt"
    path.write_bytes(b"small one\n\n" + b"x" * 5000 + b"\n" + b"y" * 10 + b"\n\nsmall two\n")
    cfg = spec(max_record_bytes=1024)
    assert [r.reason for r in read_records(path, "txt", cfg.model_copy(update={"text_unit": "line"}))] == [
        None, "too_large", None, None,
    ]
    paragraphs = list(read_records(path, "txt", cfg.model_copy(update={"text_unit": "paragraph"})))
    assert [r.reason for r in paragraphs] == [None, "too_large", None]
    assert paragraphs[2].raw == "small two"
    assert [r.reason for r in read_records(path, "txt", cfg.model_copy(update={"text_unit": "file"}))] == ["too_large"]
    jl = tmp_path / "big.jsonl"
    jl.write_text(json.dumps({"text": "z" * 5000}) + "\n" + json.dumps({"text": "fine"}) + "\n")
    assert [r.reason for r in read_records(jl, "jsonl", cfg)] == ["too_large", None]


def test_empty_inputs_are_one_row(tmp_path):
    for name, data in {"e.txt": b"", "e.jsonl": b"\n\n", "e.csv": b"text\n", "e.gz": gzip.compress(b"")}.items():
        path = tmp_path / name
        path.write_bytes(data)
        fmt = "csv" if name.endswith(".csv") else "jsonl" if name.endswith(".jsonl") else "txt"
        assert [(r.position, r.reason, r.raw) for r in read_records(path, fmt, spec())] == [(0, "empty_file", b"")]


def test_streaming_keeps_memory_bounded(tmp_path):
    line = b"a line of ordinary text that repeats many times over the file\n"
    path = tmp_path / "big.txt.gz"
    with gzip.open(path, "wb", compresslevel=1) as f:
        for _ in range(8):
            f.write(line * 16_000)  # 8 MB decompressed in all
    tracemalloc.start()
    n = sum(1 for _ in read_records(path, "txt", spec(text_unit="line")))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert n == 128_000
    assert peak < 6 * 1024 * 1024  # a few 1 MiB / 256 KiB buffers, not the 8 MB file


def test_allowed_roots_and_symlink_escape(tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    inside = root / "ok.txt"
    inside.write_text("inside the root\n")
    outside = tmp_path / "secret.txt"
    outside.write_text("outside the root\n")
    link = root / "escape.txt"
    os.symlink(outside, link)
    cfg = spec(allowed_roots=[str(root)])
    assert check_allowed(inside, [root]) == inside.resolve()
    assert [r.raw for r in read_records(inside, "txt", cfg)] == ["inside the root\n"]
    with pytest.raises(PermissionError, match="outside corpus.allowed_roots"):
        list(read_records(outside, "txt", cfg))
    with pytest.raises(PermissionError, match=str(link)):
        check_allowed(link, [root])
    with pytest.raises(PermissionError):
        check_allowed(root / ".." / "secret.txt", [str(root)])
    assert check_allowed(inside) == inside.resolve()  # default roots include the temp directory


@pytest.mark.parametrize("codec", ["utf-8", "utf-16"])
def test_jsonl_lines_beside_an_undecodable_one_are_still_parsed(tmp_path, codec):
    # A block with a bad line is decoded line by line (and UTF-16 always is): those lines are JSON too,
    # not documents holding the JSON source text (as before INGEST_VERSION 4).
    good = ['{"text": "na\u00efve one", "title": "a"}', '{"text": "three", "title": "c"}']
    bad = b'{"text": "caf\xe9"}' if codec == "utf-8" else '{"text": "caf\udce9"}'.encode(codec, "surrogatepass")[2:]
    sep = "\n".encode(codec)[2:] if codec == "utf-16" else b"\n"
    path = tmp_path / "d.jsonl"
    path.write_bytes(good[0].encode(codec) + sep + bad + sep + good[1].encode(codec)[2 if codec == "utf-16" else 0:] + sep)
    records = list(read_records(path, "jsonl", spec()))
    assert [(r.raw, r.title) for r in records if r.reason is None] == [("na\u00efve one", "a"), ("three", "c")]
    assert [(r.position, r.reason) for r in records if r.reason] == [(1, f"undecodable:{detect_encoding(path, 'jsonl')}")]


# ---------------------------------------------------------------- the block paragraph reader vs the line reader


def _reference_paragraphs(path: Path, cfg: CorpusSpec):
    """`read_text`'s paragraph mode as it was before the block reader (one `Source.lines()` line at a time): the oracle."""
    from plm.corpus.readers.lines import Source
    from plm.corpus.readers.records import QUARANTINE_RAW_BYTES
    from plm.corpus.readers.units import blank, strip_newline

    src = Source(path, cfg)
    try:
        def paragraph(position, parts, over, head):
            return src.record(position, head, True) if over else src.record(position, strip_newline(parts[0][:0].join(parts)))

        position, parts, size, over, head = 0, [], 0, False, None
        for line, too_large in src.lines():
            if not too_large and blank(line):
                if parts or over:
                    yield paragraph(position, parts, over, head)
                    position += 1
                parts, size, over, head = [], 0, False, None
                continue
            size += len(line)
            if too_large or size > src.cap:
                if not over:
                    over = True
                    head = (line[:0].join(parts) + line)[:QUARANTINE_RAW_BYTES]
                parts = []
            else:
                parts.append(line)
        if parts or over:
            yield paragraph(position, parts, over, head)
    finally:
        src.close()


def _both_paragraph_readers(path: Path, cfg: CorpusSpec) -> tuple[list, list]:
    from plm.corpus.readers import _guarded

    return list(read_records(path, "txt", cfg)), list(_guarded(path.resolve(), _reference_paragraphs, cfg))


_PARA_ATOMS = [b"word", b"x" * 300, b"y" * 1100, b" ", b"   ", b"\t", b"\r", b"\x0b", b"\x0c", b"\n", b"\n", b"\n\n",
               b" \n", b"\n \t\n", b" " * 1500, b"\xc3\xa9", b"\xff", b"\x00", b"\xef\xbb\xbf", b"\xea\xb0\x80"]


def test_block_paragraph_reader_equals_the_line_reader(tmp_path, monkeypatch):
    """Random paragraphs, blank runs of every kind of ASCII space, lines longer than the cap (1 KiB, also whitespace
    ones, which are never blank), bad bytes, NUL, a BOM anywhere, optionally gzip (also truncated); small blocks so
    lines and paragraphs cross block ends: the records (position, raw, reason) are the line reader's."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    import plm.corpus.readers.text as text

    cases = tmp_path / "cases"
    cases.mkdir()
    cfg = spec(text_unit="paragraph", max_record_bytes=1024, allowed_roots=[str(cases)])

    @settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(st.lists(st.sampled_from(_PARA_ATOMS), max_size=30).map(b"".join), st.sampled_from([7, 64, 1000, 1 << 18]),
           st.sampled_from([None, "gz", "gz-cut"]), st.booleans())
    def check(data, block, kind, bom):
        monkeypatch.setattr(text, "_BLOCK", block)
        data = (b"\xef\xbb\xbf" if bom else b"") + data
        if kind:
            data = gzip.compress(data)
            if kind == "gz-cut":
                data = data[: max(len(data) - 9, 10)]
        path = cases / "case.txt"
        path.write_bytes(data)
        got, want = _both_paragraph_readers(path, cfg)
        assert got == want

    check()


def test_block_paragraph_reader_equals_the_line_reader_on_the_assets(tmp_path):
    big = tmp_path / "big.txt"
    big.write_bytes((ASSETS / "paragraphs.txt").read_bytes() * 200 + b"\n\n" + b"z" * 3000 + b"\nlast line no newline")
    lines = tmp_path / "lines.txt"  # a paragraph of many lines crossing a 1 KiB cap: its head stops after the crossing line
    lines.write_bytes(b"intro\n\n" + b"".join(b"%d" % i + b"w" * 200 + b"\n" for i in range(12)) + b"\nnext\n\nlast\n")
    for path in (ASSETS / "paragraphs.txt", big, lines):
        for cap in (1024, 32 * 1024 * 1024):
            got, want = _both_paragraph_readers(path, spec(text_unit="paragraph", max_record_bytes=cap,
                                                           allowed_roots=[str(path.parent)]))
            assert got == want and len(got) >= 3


@pytest.mark.parametrize("codec", ["utf-8", "cp949"])
def test_paragraph_blocks_decode_joined_as_one_by_one(tmp_path, codec):
    """Paragraphs of whole ~256 KiB blocks are decoded joined; a block holding a bad byte or a NUL, a paragraph
    crossing blocks give what one decode per paragraph gives."""
    import random
    import re

    rng = random.Random(5)
    words = ["alpha", "beta", "대한민국", "헌법", "x", "Zeta."]
    paragraphs = ["\n".join(" ".join(rng.choice(words) for _ in range(rng.randint(1, 30)))
                            for _ in range(rng.randint(1, 4))) for _ in range(6000)]
    raw = [p.encode(codec) for p in paragraphs]
    raw[1000] = raw[1000] + b"\xff\xfe"  # undecodable in every codec here
    raw[4000] = b"nul \x00 inside"
    raw[2000] = b"\n".join([raw[2000]] * 2000)  # about 300 KiB: crosses a block boundary
    seps = [b"\n\n", b"\n \n", b"\n\t\r\n\n", b"\n\n\n"]
    data = b"".join(r + rng.choice(seps) for r in raw)
    path = tmp_path / "p.txt"
    path.write_bytes(data)
    cfg = CorpusSpec(text_unit="paragraph", encoding=codec, allowed_roots=[str(tmp_path)])
    got = list(read_records(path, "txt", cfg))
    units = [u for u in re.split(rb"\n(?:[ \t\r\x0b\x0c]*\n)+", data) if u.strip()]
    want = []
    for i, u in enumerate(units):
        try:
            want.append((i, None, u.decode(codec), None) if b"\x00" not in u else (i, None, u, "nul_bytes"))
        except UnicodeDecodeError:
            want.append((i, None, u, f"undecodable:{codec}"))
    assert [tuple(r)[:4] for r in got] == want
    assert {r.reason for r in got} == {None, "nul_bytes", f"undecodable:{codec}"}
