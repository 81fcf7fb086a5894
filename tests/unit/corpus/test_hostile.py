"""Every file of the hostile corpus (tests/assets/hostile) read with `read_records`: exact reasons per
file, good records around the bad ones intact, and the assets reproducible from their script."""

import runpy
from pathlib import Path

import pytest

from plm.config import CorpusSpec
from plm.corpus.readers import QUARANTINE_RAW_BYTES, detect_encoding, detect_format, read_records

HOSTILE = Path(__file__).resolve().parents[2] / "assets" / "hostile"
SPEC = CorpusSpec(
    text_unit="line", max_record_bytes=65536, compression_ratio_min_bytes=4 * 1024 * 1024, max_compression_ratio=200.0
)
GOOD_PREFIX = "A perfectly ordinary English sentence"

# file -> (format, reasons in record order; None = a kept record)
EXPECTED: dict[str, tuple[str, list[str | None]]] = {
    "empty.txt": ("txt", ["empty_file"]),
    "whitespace_only.txt": ("txt", ["empty_file"]),
    "binary.txt": ("txt", ["binary"]),
    "nul_bytes.txt": ("txt", [None, "nul_bytes", None]),
    "giant_line.txt.gz": ("txt", [None, "too_large", None]),
    "invalid_rows.jsonl": ("jsonl", [None, "invalid_json", "missing_field", "missing_field", "missing_field", None]),
    "bad_columns.csv": ("csv", [None, "bad_columns", None]),
    "cp949_bad_line.txt": ("txt", [None, "undecodable:cp949", None]),
    "utf16.txt": ("txt", [None, None, None]),
    "corrupt.txt.xz": ("txt", ["corrupt_archive"]),
    "bomb.txt.bz2": ("txt", ["too_large", "decompression_bomb"]),  # one 50 MiB line of "a"
    "really_gzip_jsonl.txt": ("jsonl", [None, None, None]),
    "broken_array.json": ("json", [None, None, "invalid_json"]),
    "corrupt.parquet": ("parquet", ["corrupt_archive"]),
    "really_parquet.txt": ("parquet", [None, "missing_field", None]),
}
TRUNCATED = {"truncated.jsonl.gz": "jsonl", "truncated.zst": "txt"}


def test_every_asset_is_covered():
    names = {p.name for p in HOSTILE.iterdir() if p.suffix != ".py"}
    assert names == set(EXPECTED) | set(TRUNCATED)
    assert sum(p.stat().st_size for p in HOSTILE.iterdir()) < 200_000


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_reasons_per_file(name):
    fmt, reasons = EXPECTED[name]
    path = HOSTILE / name
    assert detect_format(path) == fmt
    records = list(read_records(path, fmt, SPEC))
    assert [r.reason for r in records] == reasons
    assert [r.position for r in records] == list(range(len(records)))  # one position per input unit
    for rec in records:
        if rec.reason is None:
            assert isinstance(rec.raw, str) and rec.raw.strip()
        else:
            assert isinstance(rec.raw, bytes) and len(rec.raw) <= QUARANTINE_RAW_BYTES


def test_binary_row_keeps_the_head_bytes():
    (rec,) = read_records(HOSTILE / "binary.txt", "txt", SPEC)
    assert rec.raw == (HOSTILE / "binary.txt").read_bytes()  # 4 KiB, under the 64 KiB cap


def test_good_records_around_bad_ones_survive():
    lines = [r.raw for r in read_records(HOSTILE / "nul_bytes.txt", "txt", SPEC)]
    assert lines[0].startswith(GOOD_PREFIX) and lines[2].endswith("number 2.")
    assert lines[1] == b"before\x00after NUL"
    giant = list(read_records(HOSTILE / "giant_line.txt.gz", "txt", SPEC))
    assert giant[0].raw.endswith("number 0.") and giant[2].raw.endswith("number 2.")
    assert giant[1].raw.startswith(b"giant giant") and len(giant[1].raw) == QUARANTINE_RAW_BYTES
    rows = list(read_records(HOSTILE / "invalid_rows.jsonl", "jsonl", SPEC.model_copy(update={"id_field": "id", "metadata_fields": ["lang"]})))
    assert (rows[0].source_id, rows[0].metadata) == ("a", {"lang": "en"})
    assert (rows[5].source_id, rows[5].raw) == ("e", GOOD_PREFIX + " that should survive ingestion, number 5.")
    assert rows[1].raw == b'{"id": "b", "text": "unterminated\n'
    ko = list(read_records(HOSTILE / "cp949_bad_line.txt", "txt", SPEC))
    assert ko[0].raw.startswith("대한민국은") and ko[2].raw.endswith("문장 번호 2.")
    assert b"\xff\xfe" in ko[1].raw and ko[1].raw.decode("cp949", errors="replace").startswith("대한민국")
    assert detect_encoding(HOSTILE / "cp949_bad_line.txt", "txt") == "cp949"
    utf16 = [r.raw for r in read_records(HOSTILE / "utf16.txt", "txt", SPEC)]
    assert utf16[0] == "대한민국은 민주공화국이다. 모든 권력은 국민으로부터 나온다. 문장 번호 0."


@pytest.mark.parametrize("name", sorted(TRUNCATED))
def test_truncated_archive_keeps_records_before_the_damage(name):
    records = list(read_records(HOSTILE / name, TRUNCATED[name], SPEC))
    assert records[-1].reason == "corrupt_archive"
    good = records[:-1]
    assert len(good) > 50 and all(r.reason is None for r in good)
    assert [r.position for r in records] == list(range(len(records)))
    assert all(GOOD_PREFIX in r.raw for r in good)


def test_bomb_stops_early():
    _, rec = read_records(HOSTILE / "bomb.txt.bz2", "txt", SPEC)
    assert rec.reason == "decompression_bomb" and b"max_compression_ratio" in rec.raw
    capped = SPEC.model_copy(update={"compression_ratio_min_bytes": 10**12, "max_decompressed_bytes": 1_000_000})
    *_, rec = read_records(HOSTILE / "bomb.txt.bz2", "txt", capped)
    assert rec.reason == "decompression_bomb" and b"max_decompressed_bytes=1000000" in rec.raw
    whole_file = SPEC.model_copy(update={"text_unit": "file", "max_record_bytes": 64 * 1024 * 1024})
    (rec,) = read_records(HOSTILE / "bomb.txt.bz2", "txt", whole_file)  # stopped before the 64 MiB cap
    assert rec.reason == "decompression_bomb"


def test_assets_are_reproducible(tmp_path):
    build = runpy.run_path(str(HOSTILE / "make_hostile.py"))["build"]  # no __pycache__ left among the assets
    build(tmp_path)
    for path in tmp_path.iterdir():
        if path.name != "really_parquet.txt":  # Parquet embeds the writer's version
            assert path.read_bytes() == (HOSTILE / path.name).read_bytes(), path.name
