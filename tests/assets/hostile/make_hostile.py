"""Writes the hostile-input corpus next to this script: one file per bad-input class, each with good
records around the bad ones where the format allows. Bytes are reproducible (fixed seed, gzip
mtime 0). Run: `.venv/bin/python tests/assets/hostile/make_hostile.py`.

Read it with the spec in `HOSTILE_SPEC` (small caps so that the files stay tiny):
`text_unit=line`, `max_record_bytes=65536`, `compression_ratio_min_bytes=4 MiB`,
`max_compression_ratio=200`. tests/unit/corpus/test_hostile.py holds the expected reasons per file.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

HERE = Path(__file__).resolve().parent
HOSTILE_SPEC = {
    "text_unit": "line", "max_record_bytes": 65536, "compression_ratio_min_bytes": 4 * 1024 * 1024,
    "max_compression_ratio": 200.0,
}
GOOD = "A perfectly ordinary English sentence that should survive ingestion, number {i}."
KO = "대한민국은 민주공화국이다. 모든 권력은 국민으로부터 나온다. 문장 번호 {i}."


def _lines(template: str, n: int) -> list[str]:
    return [template.format(i=i) for i in range(n)]


def build(out: Path = HERE) -> dict[str, int]:
    """Write every asset into `out`; returns name -> size in bytes."""
    rng = random.Random(1234)
    files: dict[str, bytes] = {}
    files["empty.txt"] = b""
    files["whitespace_only.txt"] = b"  \n\n\t\n"
    files["binary.txt"] = bytes(rng.randrange(256) for _ in range(4096))
    files["nul_bytes.txt"] = (GOOD.format(i=0) + "\n" + "before\x00after NUL\n" + GOOD.format(i=2) + "\n").encode()
    giant = ("giant " * 40_000).encode()  # 240 kB line > max_record_bytes
    files["giant_line.txt.gz"] = gzip.compress(
        (GOOD.format(i=0) + "\n").encode() + giant + b"\n" + (GOOD.format(i=2) + "\n").encode(), mtime=0
    )
    rows = [
        json.dumps({"id": "a", "text": GOOD.format(i=0), "lang": "en"}),
        '{"id": "b", "text": "unterminated',
        json.dumps({"id": "c", "body": "no text field"}),
        json.dumps({"id": "d", "text": 42}),
        json.dumps(["not", "an", "object"]),
        json.dumps({"id": "e", "text": GOOD.format(i=5), "lang": "en"}),
    ]
    files["invalid_rows.jsonl"] = ("\n".join(rows) + "\n").encode()
    files["bad_columns.csv"] = (
        "id,text\n1,\"" + GOOD.format(i=0) + "\"\n2,one,too many\n3,\"" + GOOD.format(i=2) + "\"\n"
    ).encode()
    ko = _lines(KO, 3)
    files["cp949_bad_line.txt"] = (
        ko[0].encode("cp949") + b"\n" + ko[1].encode("cp949")[:10] + b"\xff\xfe" + ko[1].encode("cp949")[10:] + b"\n"
        + ko[2].encode("cp949") + b"\n"
    )
    files["utf16.txt"] = "\n".join(ko).encode("utf-16")  # with BOM
    jsonl = "".join(json.dumps({"text": GOOD.format(i=i) + f" {rng.random():.12f}"}) + "\n" for i in range(400))
    whole = gzip.compress(jsonl.encode(), mtime=0)
    files["truncated.jsonl.gz"] = whole[: len(whole) // 2]
    text = "".join(GOOD.format(i=i) + f" {rng.random():.12f}\n" for i in range(400)).encode()
    long_text = "".join(GOOD.format(i=i) + "\n" for i in range(4000)).encode()  # several 128 KiB zstd blocks
    zst = zstandard.ZstdCompressor(level=3).compress(long_text)
    files["truncated.zst"] = zst[: len(zst) * 2 // 3]  # whole blocks decode before the cut
    xz = bytearray(lzma.compress(text))
    xz[len(xz) // 2 : len(xz) // 2 + 16] = bytes(16)  # damage in the middle: the xz check fails
    files["corrupt.txt.xz"] = bytes(xz)
    files["bomb.txt.bz2"] = bz2.compress(b"a" * (50 * 1024 * 1024))  # 50 MiB of one line in ~50 bytes
    files["really_gzip_jsonl.txt"] = gzip.compress(
        "".join(json.dumps({"text": GOOD.format(i=i)}) + "\n" for i in range(3)).encode(), mtime=0
    )
    array = json.dumps([{"text": GOOD.format(i=0)}, {"text": GOOD.format(i=1)}])[:-1] + ', {"text": oops}]'
    files["broken_array.json"] = array.encode()
    files["corrupt.parquet"] = b"PAR1" + bytes(rng.randrange(256) for _ in range(200)) + b"PAR1"
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (out / name).write_bytes(data)
    table = pa.table({"text": [GOOD.format(i=0), None, GOOD.format(i=2)], "title": ["t0", None, "t2"]})
    pq.write_table(table, out / "really_parquet.txt", compression="zstd")
    return {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.name != Path(__file__).name}


if __name__ == "__main__":
    sizes = build()
    print(json.dumps(sizes, indent=1), sum(sizes.values()), "bytes")
