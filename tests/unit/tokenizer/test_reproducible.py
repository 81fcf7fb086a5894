"""Same lake, same spec, two fresh processes: byte-identical tokenizer.json (tokenizers#1794)."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[3]
CHILD = """
import sys
from pathlib import Path
from plm.config import TokenizerSpec
from plm.tokenizer.train import fit_tokenizer
kind, lake, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
fit_tokenizer(TokenizerSpec(kind=kind, vocab_size=3000, min_frequency=2), [lake], out)
"""


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_training_twice_in_fresh_processes_gives_the_same_bytes(tmp_path, kind):
    pytest.importorskip("gensim")
    from plm.samples import resolve_sample

    lines = [t for t in resolve_sample("sample:lee")[0].read_text(encoding="utf-8").splitlines() if t.strip()]
    rows = [{"doc_id": hashlib.sha256(t.encode()).hexdigest()[:16], "split": "train", "lang": "en", "sentences": [t]}
            for t in lines]
    lake = tmp_path / "lake.parquet"
    pq.write_table(pa.Table.from_pylist(rows), lake)
    outs = []
    for seed in ("1", "2"):
        out = tmp_path / seed / "tokenizer.json"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": seed, "TOKENIZERS_PARALLELISM": "true"}
        subprocess.run([sys.executable, "-c", CHILD, kind, str(lake), str(out)], env=env, check=True, timeout=300)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]  # ids (and, through merge ties, the vocabulary itself) differed
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(outs[0].decode())
    added = [t.content for t in tok.get_added_tokens_decoder().values()]
    assert added == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # the pinned tokens are plain vocabulary again
    prefix = "##" if kind == "wordpiece" else ""
    assert tok.token_to_id(f"{prefix}e" if kind == "wordpiece" else "e</w>") is not None
