import hashlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

EN = [
    "The quick brown fox jumps over the lazy dog.",
    "A language model learns from raw text.",
    "Tokenizers split words into pieces.",
    "Whole words are masked together.",
]
KO = ["대한민국은 민주공화국이다.", "모든 국민은 법 앞에 평등하다.", "국회는 법률을 제정한다.", "한국어 문장을 형태소로 나눈다."]


def lake_rows(n_docs: int = 80) -> list[dict]:
    """Alternating English / Korean documents with hex ids; every 5th one is validation."""
    rows = []
    for i in range(n_docs):
        lang, pool = ("en", EN) if i % 2 else ("ko", KO)
        sents = [pool[(i + k) % len(pool)] for k in range(3)]
        rows.append({
            "doc_id": hashlib.sha256(str(i).encode()).hexdigest()[:16], "lang": lang, "sentences": sents,
            "split": "validation" if i % 5 == 0 else "train",
        })  # fmt: skip
    return rows


@pytest.fixture
def mixed_lake(tmp_path):
    path = tmp_path / "lake.parquet"
    pq.write_table(pa.Table.from_pylist(lake_rows()), path, row_group_size=32)
    return [path]


@pytest.fixture
def rows():
    return lake_rows()
