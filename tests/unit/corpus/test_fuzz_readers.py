"""Fuzzing the corpus readers (hypothesis): any bytes, any format, any compression, never a crash.

Inputs are valid seed files of every format with random byte edits (replace, insert, truncate) or plain
random bytes, optionally compressed, then detected and read as ingest reads them. A reader may keep,
drop or quarantine a unit, but must finish and yield only well-formed `RawRecord`s; the one exception
allowed is the documented refusal of a table without the text column (a one-line ValueError naming the file).
`PLM_FUZZ_EXAMPLES` sets the number of examples (default: a bounded run for `make test`).
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from plm.config import CorpusSpec  # noqa: E402
from plm.corpus.readers import FORMATS, RawRecord, detect_encoding, detect_format, read_records  # noqa: E402


def _parquet() -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table({"text": ["a parquet row", "another row"], "id": [1, 2]}), buf)
    return buf.getvalue()


SEEDS = {
    "txt": "First line of text.\nSecond line, naïve café.\n\n한국어 문장입니다.\n".encode(),
    "jsonl": b'{"text": "one", "id": 1}\n{"text": "two \\u00e9", "title": "t"}\n',
    "json": b'[{"text": "one"}, {"text": "two", "id": "x"}]',
    "csv": b"id,text\n1,hello world\n2,\"quoted, with comma\"\n",
    "mediawiki": (b'<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/"><page><title>T</title>'
                  b"<revision><text>'''Bold''' [[link|text]] body.</text></revision></page></mediawiki>"),
    "parquet": _parquet(),
}


def _compress(data: bytes, kind: str | None) -> tuple[bytes, str]:
    if kind == "gz":
        return gzip.compress(data), ".gz"
    if kind == "bz2":
        return bz2.compress(data), ".bz2"
    if kind == "xz":
        return lzma.compress(data), ".xz"
    if kind == "zst":
        import zstandard

        return zstandard.ZstdCompressor().compress(data), ".zst"
    return data, ""


@st.composite
def fuzzed(draw: st.DrawFn) -> tuple[str, bytes, str | None, bool]:
    fmt = draw(st.sampled_from(FORMATS))
    if draw(st.booleans()):
        data = bytearray(SEEDS[fmt])
        for _ in range(draw(st.integers(0, 8))):
            op, pos = draw(st.sampled_from(["set", "insert", "truncate"])), draw(st.integers(0, max(len(data) - 1, 0)))
            if op == "set" and data:
                data[pos] = draw(st.integers(0, 255))
            elif op == "insert":
                data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
            else:
                del data[pos:]
        data = bytes(data)
    else:
        data = draw(st.binary(max_size=2048))
    kind = draw(st.sampled_from([None, None, "gz", "bz2", "xz", "zst"]))
    compressed, _ = _compress(data, kind)
    if kind and draw(st.booleans()):  # damage the archive itself too
        cut = draw(st.integers(0, len(compressed)))
        compressed = compressed[:cut]
    return fmt, compressed, kind, draw(st.booleans())


EXAMPLES = int(os.environ.get("PLM_FUZZ_EXAMPLES", "150"))


@settings(max_examples=EXAMPLES, deadline=None, derandomize="PLM_FUZZ_EXAMPLES" not in os.environ,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
@given(case=fuzzed())
def test_readers_survive_fuzzed_input(case):
    fmt, data, kind, detect = case
    _, suffix = _compress(b"", kind)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"input.{fmt}{suffix}"
        path.write_bytes(data)
        cfg = CorpusSpec(allowed_roots=[tmp])
        read_as = detect_format(path) if detect else fmt
        try:
            if read_as not in ("parquet",):
                detect_encoding(path, read_as)
            records = list(read_records(path, read_as, cfg))
        except ValueError as exc:  # a clean refusal (a CSV/Parquet without the text column): one line naming the file
            assert str(path) in str(exc) and "\n" not in str(exc), repr(exc)
            return
    assert records, "every file yields at least one row (a record or a quarantine reason)"
    for rec in records:
        assert isinstance(rec, RawRecord) and isinstance(rec.position, int)
        assert isinstance(rec.raw, str | bytes) and (rec.reason is None or isinstance(rec.reason, str))
        assert rec.reason is not None or isinstance(rec.raw, str), rec
