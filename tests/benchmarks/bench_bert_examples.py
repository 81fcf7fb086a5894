"""Raw sentences -> MLM+NSP shards: plm vs a pure-Python re-implementation of BERT's create_pretraining_data.

The reference is written from the algorithm's description (Devlin et al. 2019 and the original
`create_pretraining_data.py` structure): BERT's character-level BasicTokenizer + greedy longest-match
WordPiece over the same vocabulary, `create_instances_from_document` with per-token `truncate_seq_pair`, and
`create_masked_lm_predictions` with a shuffled candidate list, written to Parquet from Python lists.
Both sides get the same sentences, vocabulary, seq_len 128, dupe_factor 1. Three scopes are timed:
`creation` = pair creation + masking + token ids, in memory (Python lists vs an Arrow table), no file;
`after_tokenizing` = creation + writing the Parquet shard; `e2e` = tokenizing + all of that.

Run: make bench   (or: .venv/bin/python -m pytest -s tests/benchmarks/bench_bert_examples.py -p no:cacheprovider -o addopts=)
"""

from __future__ import annotations

import json
import random
import time
import unicodedata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from plm.config import CorpusSpec, ObjectivesSpec, TokenizerSpec
from plm.objectives.nsp import PairPlan, plan_document
from plm.objectives.shards import _flat_documents, _mask_and_table, write_bert_examples
from plm.tokenizer.encode import encode_documents
from plm.tokenizer.specials import SpecialIds
from plm.tokenizer.train import iter_sentences, train_tokenizer

pytest.importorskip("gensim")
pytest.importorskip("konlpy")

SEQ_LEN, MAX_PRED, P = 128, 20, 0.15


# ---- the pure-Python reference --------------------------------------------------------------------


def _is_whitespace(ch: str) -> bool:
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_control(ch: str) -> bool:
    return ch not in "\t\n\r" and unicodedata.category(ch).startswith("C")


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    return 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126 or unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
            or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)  # fmt: skip


class PyWordPiece:
    """BERT's FullTokenizer, as its paper/code describe it: a character-level BasicTokenizer (clean text,
    pad CJK ideographs, whitespace split, lowercase, split off punctuation) then greedy longest-match-first
    WordPiece with `##` continuations and [UNK] for words over 100 characters. Accents are kept (as
    plm's tokenizer keeps them: stripping breaks Hangul)."""

    def __init__(self, vocab: dict[str, int], lowercase: bool) -> None:
        self.vocab, self.lowercase = vocab, lowercase

    def basic(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFC", text)
        cleaned = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or _is_control(ch):
                continue
            cleaned.append(" " if _is_whitespace(ch) else ch)
        padded = []
        for ch in cleaned:
            padded.append(f" {ch} " if _is_cjk(ord(ch)) else ch)
        out: list[str] = []
        for token in "".join(padded).split():
            if self.lowercase:
                token = token.lower()
            word: list[str] = []
            for ch in token:  # split punctuation off, character by character
                if _is_punctuation(ch):
                    if word:
                        out.append("".join(word))
                        word = []
                    out.append(ch)
                else:
                    word.append(ch)
            if word:
                out.append("".join(word))
        return out

    def tokenize(self, text: str) -> list[str]:
        out: list[str] = []
        for word in self.basic(text):
            if len(word) > 100:
                out.append("[UNK]")
                continue
            start, pieces = 0, []
            while start < len(word):
                end, piece = len(word), None
                while start < end:
                    sub = word[start:end] if start == 0 else "##" + word[start:end]
                    if sub in self.vocab:
                        piece = sub
                        break
                    end -= 1
                if piece is None:
                    pieces = ["[UNK]"]
                    break
                pieces.append(piece)
                start = end
            out.extend(pieces)
        return out


def py_truncate(a: list, b: list, max_tokens: int, rng: random.Random) -> None:
    while len(a) + len(b) > max_tokens:
        longer = a if len(a) > len(b) else b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


def py_instances(docs: list[list[list[str]]], index: int, rng: random.Random) -> list[tuple[list[str], list[str], bool]]:
    document, max_num = docs[index], SEQ_LEN - 3
    target = rng.randint(2, max_num) if rng.random() < 0.1 else max_num
    out, chunk, length, i = [], [], 0, 0
    while i < len(document):
        chunk.append(document[i])
        length += len(document[i])
        if i == len(document) - 1 or length >= target:
            a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
            a = [t for s in chunk[:a_end] for t in s]
            if len(chunk) == 1 or rng.random() < 0.5:
                is_random, b = True, []
                for _ in range(10):
                    r = rng.randint(0, len(docs) - 1)
                    if r != index:
                        break
                other = docs[r]
                for j in range(rng.randint(0, len(other) - 1), len(other)):
                    b.extend(other[j])
                    if len(b) >= target - len(a):
                        break
                i -= len(chunk) - a_end
            else:
                is_random, b = False, [t for s in chunk[a_end:] for t in s]
            py_truncate(a, b, max_num, rng)
            if a and b:
                out.append((a, b, is_random))
            chunk, length = [], 0
        i += 1
    return out


def py_mask(tokens: list[str], vocab_words: list[str], rng: random.Random) -> tuple[list[str], list[int], list[str]]:
    cand = [i for i, t in enumerate(tokens) if t not in ("[CLS]", "[SEP]")]
    rng.shuffle(cand)
    k = min(MAX_PRED, max(1, int(round(len(tokens) * P))))
    out, positions, labels = list(tokens), [], []
    for i in sorted(cand[:k]):
        r = rng.random()
        out[i] = "[MASK]" if r < 0.8 else (tokens[i] if r < 0.9 else vocab_words[rng.randint(5, len(vocab_words) - 1)])
        positions.append(i)
        labels.append(tokens[i])
    return out, positions, labels


def py_pipeline(sent_docs: list[list[str]], vocab: dict[str, int], lowercase: bool, out: Path) -> tuple[int, float, float]:
    """Returns (instances, seconds of instance creation + masking + id conversion, seconds of everything after tokenizing)."""
    tok = PyWordPiece(vocab, lowercase)
    docs = [[tok.tokenize(s) for s in d] for d in sent_docs]
    docs = [[s for s in d if s] for d in docs if any(d)]
    words = sorted(vocab, key=vocab.get)
    rng = random.Random(12345)
    t0 = time.perf_counter()
    rows = []
    for i in range(len(docs)):
        for a, b, is_random in py_instances(docs, i, rng):
            tokens = ["[CLS]", *a, "[SEP]", *b, "[SEP]"]
            masked, positions, labels = py_mask(tokens, words, rng)
            rows.append((masked, [0] * (len(a) + 2) + [1] * (len(b) + 1), positions, labels, int(is_random)))
    rng.shuffle(rows)
    rows = [([vocab[t] for t in r[0]], r[1], r[2], [vocab[t] for t in r[3]], r[4]) for r in rows]
    creation = time.perf_counter() - t0
    table = pa.table({
        "input_ids": [r[0] for r in rows],
        "token_type_ids": [r[1] for r in rows],
        "positions": [r[2] for r in rows],
        "labels": [r[3] for r in rows],
        "nsp_label": [r[4] for r in rows],
    })
    pq.write_table(table, out, compression="zstd")
    return len(rows), creation, time.perf_counter() - t0


def plm_creation(docs: list, cfg: ObjectivesSpec, vocab_size: int, specials: SpecialIds) -> tuple[int, float]:
    """plm's instance creation + masking into an Arrow table (what `write_bert_examples` does before writing)."""
    t0 = time.perf_counter()
    flat, doc_start, bounds = _flat_documents(docs, cfg.whole_word)
    rng = np.random.default_rng([cfg.seed, 0, 0, 0, 0])
    coin = random.Random(int(rng.integers(2**63)))
    plan = PairPlan()
    for i in range(len(bounds)):
        plan_document(bounds, i, cfg.seq_len, cfg.short_seq_prob, cfg.nsp_random_fraction, coin, plan)
    table, _ = _mask_and_table(plan, rng.permutation(len(plan)), flat, doc_start, [d.doc_id for d in docs], cfg,
                               vocab_size, specials, rng)  # fmt: skip
    return table.num_rows, time.perf_counter() - t0


# ---- the benchmark ------------------------------------------------------------------------------


def _reset_peak_rss() -> None:
    """Linux: reset this process's peak RSS (VmHWM) to its current RSS, so a phase's own peak can be read."""
    Path("/proc/self/clear_refs").write_text("5")


def _peak_rss_mb() -> float:
    status = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


def test_bert_examples_vs_pure_python(tmp_path):
    from plm.corpus.ingest import ingest_corpus

    lake = ingest_corpus(CorpusSpec(paths=["sample:enwiki", "sample:ko-constitution", "sample:ko-bills"]), tmp_path)
    tok_spec = TokenizerSpec(vocab_size=8000)
    tok = train_tokenizer(tok_spec, lake.files, tmp_path / "tokenizer.json")
    tok = tok[0] if isinstance(tok, tuple) else tok
    vocab = tok.get_vocab()
    sent_docs = [
        d for f in lake.files
        for d in pq.read_table(f, columns=["sentences", "split"]).filter(
            pa.compute.equal(pq.read_table(f, columns=["split"]).column("split"), "train")
        ).column("sentences").to_pylist()
    ]  # fmt: skip
    n_sent = sum(len(d) for d in sent_docs)
    assert n_sent == sum(len(b) for b in iter_sentences(lake.files, "train"))

    sample = [x for d in sent_docs for x in d][:3000]  # the reference tokenizes like plm's tokenizer
    py_tok = PyWordPiece(vocab, tok_spec.lowercase)
    same = sum(py_tok.tokenize(x) == tok.encode(x, add_special_tokens=False).tokens for x in sample) / len(sample)
    assert same > 0.99, f"reference tokenizer agrees with the trained tokenizer on only {same:.1%} of sentences"

    cfg = ObjectivesSpec(dupe_factor=1, seq_len=SEQ_LEN)
    specials = SpecialIds.from_tokenizer(tok)
    _reset_peak_rss()
    t0 = time.perf_counter()
    docs = encode_documents(tok, lake.files, "train")
    t1 = time.perf_counter()
    stats = write_bert_examples(docs, "train", cfg, tok.get_vocab_size(), specials, tmp_path / "plm")
    t2 = time.perf_counter()
    plm_e2e, plm_create = t2 - t0, t2 - t1
    plm_rss = _peak_rss_mb()

    _reset_peak_rss()
    t3 = time.perf_counter()
    py_n, py_create, py_after = py_pipeline(sent_docs, vocab, tok_spec.lowercase, tmp_path / "py.parquet")
    py_e2e = time.perf_counter() - t3
    py_rss = _peak_rss_mb()
    plm_n, plm_create_only = plm_creation(docs, cfg, tok.get_vocab_size(), specials)

    two = cfg.model_copy(update={"workers": 2, "docs_per_shard": 8})
    t4 = time.perf_counter()
    stats2 = write_bert_examples(docs, "train", two, tok.get_vocab_size(), specials, tmp_path / "plm2")
    plm2_create = time.perf_counter() - t4

    result = {
        "sentences": n_sent,
        "reference_tokenizer_agreement": round(same, 4),
        "plm_instances": stats.examples,
        "python_instances": py_n,
        "plm_e2e_inst_per_s": round(stats.examples / plm_e2e),
        "python_e2e_inst_per_s": round(py_n / py_e2e),
        "e2e_speedup": round((stats.examples / plm_e2e) / (py_n / py_e2e), 1),
        "plm_creation_inst_per_s": round(plm_n / plm_create_only),
        "python_creation_inst_per_s": round(py_n / py_create),
        "creation_speedup": round((plm_n / plm_create_only) / (py_n / py_create), 1),
        "plm_after_tokenizing_inst_per_s": round(stats.examples / plm_create),
        "python_after_tokenizing_inst_per_s": round(py_n / py_after),
        "after_tokenizing_speedup": round((stats.examples / plm_create) / (py_n / py_after), 1),
        "plm_2_workers_creation_inst_per_s": round(stats2.examples / plm2_create),
        "after_tokenizing_speedup_2_workers": round((stats2.examples / plm2_create) / (py_n / py_after), 1),
        "e2e_speedup_2_workers": round((stats2.examples / (plm2_create + t1 - t0)) / (py_n / py_e2e), 1),
    }
    print("\nBENCH bert_examples", json.dumps(result))
    # the line: end to end (tokenizing + creation + masking + Parquet), one worker; each side's
    # peak RSS is the process's peak during that side's run (VmHWM reset before it; the corpus and the
    # tokenizer already loaded are included for both)
    e2e = {"unit": "instances/s", "plm": result["plm_e2e_inst_per_s"], "peer": result["python_e2e_inst_per_s"],
           "ratio": result["e2e_speedup"], "peak_rss_mb": {"plm": round(plm_rss), "peer": round(py_rss)},
           "ratio_2_workers": result["e2e_speedup_2_workers"], "sentences": n_sent}  # fmt: skip
    print("BENCH bert_examples_e2e", json.dumps(e2e))
    assert abs(stats.examples - py_n) / py_n < 0.1  # same algorithm, same corpus: about as many instances
