"""Peak memory of tokenizer training on a ~1 GB corpus: plm's `fit_tokenizer` over a lake vs `tokenizers` directly.

    .venv/bin/python -m pytest -q -s tests/benchmarks/bench_tokenizer_memory.py -p no:cacheprovider -o addopts= -o 'python_files=bench_*.py'
    (or: .venv/bin/python tests/benchmarks/bench_tokenizer_memory.py)

Target (issue 12): peak RSS <= 2 GB for a 1 GB corpus. `PLM_BENCH_QUICK=1` uses ~50 MB, `PLM_BENCH_MB=N` about
N MB; `PLM_BENCH_DIR` keeps the generated lake between runs (default: a temp dir, removed afterwards);
`PLM_BENCH_MAX_TRAIN_BYTES` and `PLM_BENCH_MAX_DISTINCT_WORDS` set plm's `tokenizer.max_train_bytes` and
`tokenizer.max_distinct_words` (default: the spec's defaults); `PLM_BENCH_SIDES=plm` (or `peer`) runs one side only.
`PLM_BENCH_QUALITY=N[,N...]` instead measures what the distinct-word budget costs: a copy of the lake
with every 10th document moved to the validation split, one tokenizer trained without a distinct-word
budget and one per budget N; per budget: the sample fraction, the overlap of the two vocabularies and
the held-out fertility (tokens per whitespace word) and unknown rate of each.

The corpus. BPE/WordPiece training memory grows with the number of *distinct* words (the word-count map,
each distinct word's symbol sequence, the pair -> word-positions index), not with the bytes: repeating a
60 MB text 17 times gives 1 GB with the distinct words of 60 MB and understates it. So the text is drawn
from a Zipf-Mandelbrot distribution (p(rank) ~ 1/(rank + 2.7), the classic fit of natural text) over a
vocabulary of up to ~5.5 M strings (scaled with the corpus size): real English lemmas and headwords
(WordNet `wordnet-base` and GCIDE `dict-gcide` when installed, gensim's test corpora otherwise) at the top ranks, then generated pseudo-words
(1-4 English-like syllables with inflections), Hangul pseudo-words with particles (1 in 8), numbers and
mixed-case variants in the tail. One sentence in ten is a real WordNet gloss (or a gensim test sentence)
verbatim. At 1 GB this gives 96 M words and 4.9 M distinct vocabulary entries used; Heaps' law with
typical English parameters (V = K n^b, K 30-45, b 0.55-0.6) predicts 1.1-1.9 M distinct words for 96 M
words, so the tail is 2.5-4x longer than real text's: the pessimistic side for memory. The distinct-word
count is measured and printed.

The lake is written directly in the lake's Parquet schema (`plm.corpus.ingest.DOCUMENT_SCHEMA`, every
document in the train split, `text` left null: training reads only `doc_id`, `sentences`, `split`,
`n_chars`), so the benchmark measures training, not ingest. Each side runs in a child process that
reports its own peak RSS (`VmHWM` of `/proc/self/status`, read before it exits: the process's own
high-water mark, unlike `ru_maxrss` of children, which is the largest of all children ever waited for).
plm: `fit_tokenizer(TokenizerSpec(**spec), lake files)` (its default `max_train_bytes` and `max_distinct_words`
budgets: the sizing pass counts distinct words in DuckDB; two trainings: see `_hash_ordered_tokens`). Peer: the same `Tokenizer`/trainer (`build_tokenizer`) trained with
`train_from_iterator` over the same files' sentences, read with pyarrow in 2048-row batches.
"""

from __future__ import annotations

import bz2
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
QUICK = os.environ.get("PLM_BENCH_QUICK") == "1"
TARGET_MB = 2048
WORDNET = Path("/usr/share/wordnet")
GCIDE_INDEX = Path("/usr/share/dictd/gcide.index")
SPEC = {"kind": "wordpiece", "vocab_size": 32000}
"""BERT-base's vocabulary size: what one would train on a 1 GB corpus."""
if os.environ.get("PLM_BENCH_MAX_TRAIN_BYTES"):  # plm's budget (`tokenizer.max_train_bytes`); the peer reads everything
    SPEC["max_train_bytes"] = int(float(os.environ["PLM_BENCH_MAX_TRAIN_BYTES"]))
if os.environ.get("PLM_BENCH_MAX_DISTINCT_WORDS"):
    SPEC["max_distinct_words"] = int(float(os.environ["PLM_BENCH_MAX_DISTINCT_WORDS"]))

SIDES = [m for m in os.environ.get("PLM_BENCH_SIDES", "plm,peer").split(",") if m]
assert set(SIDES) <= {"plm", "peer"}, f"PLM_BENCH_SIDES: plm and/or peer, not {SIDES}"

CHILD = r"""
import json, sys, time
from pathlib import Path
mode, spec, out, files = sys.argv[1], json.loads(sys.argv[2]), Path(sys.argv[3]), [Path(p) for p in sys.argv[4:]]
from plm.config import TokenizerSpec
from plm.tokenizer.train import build_tokenizer, fit_tokenizer
cfg = TokenizerSpec(**spec)
start = time.perf_counter()
if mode == "plm":
    tok, stats = fit_tokenizer(cfg, files, out)
    extra = {"sampled_fraction": stats.sampled_fraction, "train_bytes": stats.train_bytes,
             "distinct_words": stats.distinct_words, "split_distinct_words": stats.split_distinct_words}
else:
    import pyarrow.compute as pc, pyarrow.parquet as pq
    def batches():
        for path in files:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=2048, columns=["sentences"]):
                yield pc.list_flatten(batch.column("sentences")).to_pylist()
    tok, trainer = build_tokenizer(cfg)
    tok.train_from_iterator(batches(), trainer=trainer)
    extra = {}
seconds = time.perf_counter() - start
status = Path("/proc/self/status").read_text().splitlines()
hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
print(json.dumps({"seconds": seconds, "peak_rss_mb": hwm, "vocab": tok.get_vocab_size(), **extra}))
"""


# ---- the corpus ----------------------------------------------------------------------------------


def real_text() -> tuple[list[str], list[str]]:
    """(real words, real sentences): WordNet lemmas + glosses and GCIDE headwords, else gensim's test corpora."""
    words: list[str] = []
    sentences: list[str] = []
    if WORDNET.is_dir():
        for pos in ("noun", "verb", "adj", "adv"):
            for line in (WORDNET / f"index.{pos}").read_text(errors="replace").splitlines():
                if not line.startswith(" "):
                    words.extend(line.split(" ", 1)[0].split("_"))
            for line in (WORDNET / f"data.{pos}").read_text(errors="replace").splitlines():
                if not line.startswith(" ") and "|" in line:
                    gloss = line.split("|", 1)[1].strip()
                    sentences.extend(s.strip() for s in gloss.split(";") if len(s.strip()) > 10)
    if GCIDE_INDEX.is_file():
        words.extend(line.split("\t", 1)[0] for line in GCIDE_INDEX.read_text(errors="replace").splitlines()[10:])
    if not sentences:
        import gensim.test.utils as gt

        data = Path(gt.datapath("head500.noblanks.cor.bz2"))
        text = bz2.decompress(data.read_bytes()).decode("utf-8", "replace")
        sentences = [s for s in re.split(r"(?<=[.!?])\s+|\n", text) if len(s) > 10]
        sentences += [s for s in Path(gt.datapath("lee_background.cor")).read_text(errors="replace").splitlines() if s]
        words = [w for s in sentences for w in s.split()]
    words = list(dict.fromkeys(w for w in words if w and not w.isspace()))
    return words, sentences


ONSETS = "b c d f g h j k l m n p r s t v w y z bl br ch cl cr dr fl fr gl gr pl pr sc sh sk sl sp st str th tr wh"
ONSETS = ONSETS.split()
VOWELS = "a e i o u y ai au ea ee ei ie oa oo ou".split()
CODAS = ["", "", "", "b", "ck", "d", "g", "k", "l", "ll", "m", "n", "nd", "ng", "nt", "p", "r", "rd", "rk", "rn", "s",
         "ss", "st", "t", "th", "x", "z"]  # fmt: skip
SUFFIXES = ["", "", "", "", "s", "ed", "ing", "er", "ers", "ly", "ness", "ism", "ist", "ation", "able", "ity"]
PARTICLES = ["", "이", "가", "은", "는", "을", "를", "에", "에서", "의", "으로", "와", "과", "도", "만", "까지", "하다", "했다"]


def generated_words(n: int, rng: np.random.Generator) -> list[str]:
    """`n` pseudo-words (duplicates possible, removed by the caller): 7/8 English-like, 1/8 Hangul, with
    numbers and capitalised variants mixed in."""
    syllables = [o + v + c for o in ONSETS for v in VOWELS for c in CODAS]
    syl = np.asarray(syllables, dtype=object)
    count = rng.choice([1, 2, 2, 3, 3, 4], size=n)
    picks = rng.integers(0, len(syl), size=(n, 4))
    suffix = rng.integers(0, len(SUFFIXES), size=n)
    kind = rng.random(n)
    hangul = rng.integers(0xAC00, 0xD7A4, size=(n, 4))
    particle = rng.integers(0, len(PARTICLES), size=n)
    numbers = rng.integers(0, 10**rng.integers(1, 8, size=n))
    out = []
    for i in range(n):
        k = count[i]
        if kind[i] < 0.125:
            out.append("".join(map(chr, hangul[i, :k])) + PARTICLES[particle[i]])
        elif kind[i] < 0.16:
            out.append(str(numbers[i]))
        else:
            word = "".join(syl[picks[i, :k]]) + SUFFIXES[suffix[i]]
            out.append(word.capitalize() if kind[i] > 0.95 else word)
    return out


def vocabulary(n_generated: int, seed: int = 0) -> pa.Array:
    """Real words first (the frequent ranks, shuffled), then distinct generated ones."""
    rng = np.random.default_rng(seed)
    real, _ = real_text()
    real = [real[i] for i in rng.permutation(len(real))]
    seen = set(real)
    tail = [w for w in dict.fromkeys(generated_words(n_generated, rng)) if w not in seen]
    return pa.array(real + tail, pa.string())


def write_lake(out_dir: Path, target_bytes: int, seed: int = 0) -> tuple[list[Path], dict]:
    """Lake Parquet files of about `target_bytes` of sentence text; returns (files, corpus facts)."""
    from plm.corpus.ingest import DOCUMENT_SCHEMA

    rng = np.random.default_rng(seed)
    vocab = vocabulary(int(6_000_000 * min(1.0, max(0.05, target_bytes / 1e9))), seed)
    _, glosses = real_text()
    gloss = pa.array(glosses, pa.string())
    ranks = np.arange(1, len(vocab) + 1, dtype=np.float64)
    cdf = np.cumsum(1.0 / (ranks + 2.7))
    cdf /= cdf[-1]
    out_dir.mkdir(parents=True, exist_ok=True)
    files, written, doc_no, n_words, seen = [], 0, 0, 0, np.zeros(len(vocab), dtype=bool)
    per_file = 100_000_000
    while written < target_bytes:
        path = out_dir / f"part-{len(files):05d}.parquet"
        with pq.ParquetWriter(path, DOCUMENT_SCHEMA, compression="zstd") as writer:
            file_bytes = 0
            while file_bytes < per_file and written + file_bytes < target_bytes:
                n_docs = 2048
                sents_per_doc = rng.integers(3, 25, size=n_docs)
                n_sent = int(sents_per_doc.sum())
                words_per_sent = rng.integers(6, 35, size=n_sent)
                draws = np.searchsorted(cdf, rng.random(int(words_per_sent.sum())))
                seen[draws] = True
                n_words += len(draws)
                words = vocab.take(pa.array(draws))
                offsets = np.concatenate([[0], np.cumsum(words_per_sent)]).astype(np.int32)
                sent = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), words), " ")
                sent = pc.binary_join_element_wise(pc.utf8_capitalize(sent), pa.scalar("."), "")
                real = rng.random(n_sent) < 0.1  # a real sentence verbatim, one in ten
                sent = pc.if_else(pa.array(real), gloss.take(pa.array(rng.integers(0, len(gloss), n_sent))), sent)
                doc_offsets = np.concatenate([[0], np.cumsum(sents_per_doc)]).astype(np.int32)
                sentences = pa.ListArray.from_arrays(pa.array(doc_offsets), sent)
                nbytes = int(pc.sum(pc.binary_length(sent)).as_py())
                lengths = pc.utf8_length(sent).to_numpy()
                n_chars = np.add.reduceat(lengths + 1, doc_offsets[:-1]).astype(np.int32)
                ids = [f"{int(x):016x}" for x in rng.integers(0, 2**63, size=n_docs)]
                null = pa.nulls(n_docs, pa.string())
                writer.write_table(pa.Table.from_arrays([
                    pa.array(ids, pa.string()), pa.array([f"synthetic-{len(files)}"] * n_docs, pa.string()),
                    pa.array(np.arange(doc_no, doc_no + n_docs), pa.int64()), null, null,
                    pa.array(["en"] * n_docs, pa.string()), pa.array(["train"] * n_docs, pa.string()),
                    pa.array(n_chars, pa.int32()), sentences, null, null,
                ], schema=DOCUMENT_SCHEMA))  # fmt: skip
                doc_no += n_docs
                file_bytes += nbytes
        files.append(path)
        written += file_bytes
    facts = {"corpus_mb": round(written / 1e6, 1), "documents": doc_no, "words": n_words,
             "distinct_vocabulary_words_used": int(seen.sum()), "vocabulary": len(vocab)}  # fmt: skip
    return files, facts


# ---- the benchmark ------------------------------------------------------------------------------


def run_side(mode: str, files: list[Path], out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", CHILD, mode, json.dumps(SPEC), str(out), *map(str, files)],
                          env=env, capture_output=True, text=True, check=False)  # fmt: skip
    if proc.returncode:
        raise RuntimeError(f"{mode} child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure() -> dict:
    target = int(float(os.environ.get("PLM_BENCH_MB", 50 if QUICK else 1000)) * 1e6)
    keep = os.environ.get("PLM_BENCH_DIR")
    root = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="plm-bench-tokmem-"))
    lake = root / f"lake-{target}"
    try:
        facts_path = lake / "facts.json"
        if facts_path.is_file():
            facts = json.loads(facts_path.read_text())
            files = sorted(lake.glob("part-*.parquet"))
        else:
            t = time.perf_counter()
            files, facts = write_lake(lake, target)
            facts["generate_s"] = round(time.perf_counter() - t)
            facts_path.write_text(json.dumps(facts))
        print(f"\ncorpus: {json.dumps(facts)}", flush=True)
        sides = {}
        for mode in SIDES:
            sides[mode] = run_side(mode, files, root / f"{mode}.json")
            print(f"{mode}: {json.dumps(sides[mode])}", flush=True)
        plm, peer = sides.get("plm"), sides.get("peer")
        return {
            "unit": "peak_rss_mb", **{k: round(v["peak_rss_mb"]) for k, v in sides.items()},
            "ratio": round(peer["peak_rss_mb"] / plm["peak_rss_mb"], 2) if plm and peer else None,
            "target_mb": TARGET_MB,
            "peak_rss_mb": {k: round(v["peak_rss_mb"]) for k, v in sides.items()},
            "seconds": {k: round(v["seconds"]) for k, v in sides.items()},
            **({"plm_sampled_fraction": round(plm["sampled_fraction"], 4), "plm_train_mb": round(plm["train_bytes"] / 1e6),
                "plm_distinct_words": plm["distinct_words"], "split_distinct_words": plm["split_distinct_words"]}
               if plm else {}),
            **{k: facts[k] for k in ("corpus_mb", "documents", "words", "distinct_vocabulary_words_used")},
            "tokenizer": SPEC,
        }  # fmt: skip
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


QUALITY_CHILD = r"""
import json, sys
from pathlib import Path
from plm.config import TokenizerSpec
from plm.tokenizer.train import evaluate_tokenizer, fit_tokenizer
spec, out, files = json.loads(sys.argv[1]), Path(sys.argv[2]), [Path(p) for p in sys.argv[3:]]
tok, stats = fit_tokenizer(TokenizerSpec(**spec), files, out)
metrics = evaluate_tokenizer(tok, files, "validation")
print(json.dumps({"sampled_fraction": stats.sampled_fraction, "distinct_words": stats.distinct_words,
                  "split_distinct_words": stats.split_distinct_words, "fertility": metrics["fertility"],
                  "unk_rate": metrics["unk_rate"], "vocab": sorted(tok.get_vocab())}))
"""


def held_out_lake(files: list[Path], out_dir: Path) -> list[Path]:
    """The lake with every 10th document (by position) in the validation split."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for path in files:
        table = pq.read_table(path)
        position = table.column("position").to_numpy()
        split = pa.array(np.where(position % 10 == 0, "validation", "train"), pa.string())
        table = table.set_column(table.schema.get_field_index("split"), "split", split)
        pq.write_table(table, out_dir / path.name, compression="zstd")
        out.append(out_dir / path.name)
    return out


def quality(budgets: list[int]) -> dict:
    """Vocabulary overlap and held-out fertility of the budgeted tokenizers vs the unbudgeted one."""
    target = int(float(os.environ.get("PLM_BENCH_MB", 50 if QUICK else 1000)) * 1e6)
    keep = os.environ.get("PLM_BENCH_DIR")
    root = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="plm-bench-tokq-"))
    try:
        lake = root / f"lake-{target}"
        files = sorted(lake.glob("part-*.parquet")) if (lake / "facts.json").is_file() else write_lake(lake, target)[0]
        files = held_out_lake(files, root / f"heldout-{target}")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}

        def train(budget: int) -> dict:
            spec = {**SPEC, "max_distinct_words": budget}
            proc = subprocess.run([sys.executable, "-c", QUALITY_CHILD, json.dumps(spec), str(root / f"q-{budget}.json"),
                                   *map(str, files)], env=env, capture_output=True, text=True, check=True)  # fmt: skip
            return json.loads(proc.stdout.strip().splitlines()[-1])

        full = train(10**12)
        rows = []
        for budget in budgets:
            got = train(budget)
            overlap = len(set(got["vocab"]) & set(full["vocab"])) / len(full["vocab"])
            rows.append({"max_distinct_words": budget, "sampled_fraction": round(got["sampled_fraction"], 4),
                         "distinct_words": got["distinct_words"], "vocab_overlap": round(overlap, 4),
                         "fertility": round(got["fertility"], 4), "unk_rate": round(got["unk_rate"], 6)})  # fmt: skip
            print(f"budget: {json.dumps(rows[-1])}", flush=True)
        return {"unbudgeted": {"fertility": round(full["fertility"], 4), "unk_rate": round(full["unk_rate"], 6),
                               "split_distinct_words": full["split_distinct_words"]},
                "budgeted": rows, "tokenizer": SPEC}  # fmt: skip
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def test_tokenizer_memory_1gb():
    if os.environ.get("PLM_BENCH_QUALITY"):
        result = quality([int(float(b)) for b in os.environ["PLM_BENCH_QUALITY"].split(",")])
        print("BENCH tokenizer_memory_budget_quality", json.dumps(result))
        return
    result = measure()
    print("BENCH tokenizer_memory_1gb", json.dumps(result))
    if not QUICK and not os.environ.get("PLM_BENCH_MB") and "plm" in result:
        assert result["plm"] <= TARGET_MB, f"plm's tokenizer training peaked at {result['plm']} MB (target {TARGET_MB})"


if __name__ == "__main__":
    test_tokenizer_memory_1gb()
