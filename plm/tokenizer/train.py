"""Train a tokenizer with HF `tokenizers`, streaming sentences from the lake's Arrow batches.

Kinds (`TokenizerSpec.kind`):
- `wordpiece`: BERT style, BertPreTokenizer, `##` continuation, WordPiece decoder.
- `bpe`: Sennrich-style BPE over whitespace/punctuation words, `</w>` end-of-word suffix, with unk.
- `bytelevel_bpe`: GPT-2 style, ByteLevel pre-tokenizer (no prefix space), full byte alphabet, no unk.
- `unigram`: SentencePiece style, Metaspace (`▁`) pre-tokenizer, UnigramTrainer, with unk.

Normaliser: NFC or NFKC, then optional lowercasing. Accents are never stripped: stripping
decomposes Hangul syllables into jamo (and `BertNormalizer(strip_accents=None)` follows
`lowercase`, so it is set to False explicitly).

Special tokens come first in the vocabulary (see `plm.tokenizer.specials`). Post-processor: the
bert family adds `[CLS] A [SEP]` / `[CLS] A [SEP] B [SEP]` (type id 1 for B); the gpt family adds
nothing, as GPT-2's tokenizer does: causal LM packing inserts `<|endoftext|>` between documents
itself, so `encode(text).ids` are the text's tokens only.

Memory budget: training reads a deterministic hash sample of documents
(`int(doc_id, 16) % 10**6 < fraction * 10**6`) when the train split exceeds either budget, and the
fraction is returned in `TrainStats`:
- `max_train_bytes`: the sentences' UTF-8 bytes;
- `max_distinct_words`: the distinct words the trainer would count (the trainers' memory is about
  1.3 KB per distinct word: the word-count map, each word's symbols, the pair -> words index; bytes
  bound it only loosely). The sizing pass counts them exactly in DuckDB under a memory limit (spilling
  to disk), splitting words as the kind's pre-tokenizer does (`WORD_PATTERNS`), and records for every
  distinct word the smallest document hash bucket it occurs in. A sample keeps buckets below a
  threshold, so the distinct words of every possible sample are known from that one pass, and the
  largest sample within the budget is taken: no model of how distinct words grow with the sample.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from plm.config import TokenizerSpec
from plm.tokenizer.specials import BERT_SPECIALS, SpecialIds, family_of, hf_tokenizer_kwargs, special_tokens
from plm.tracker import Progress, no_progress

# Kept for the bert family's callers: [PAD] [UNK] [CLS] [SEP] [MASK] are always ids 0..4.
SPECIAL_TOKENS = list(BERT_SPECIALS)
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = range(len(SPECIAL_TOKENS))
BPE_SUFFIX = "</w>"
SAMPLE_MODULUS = 10**6

__all__ = [
    "CLS_ID", "MASK_ID", "PAD_ID", "SEP_ID", "SPECIAL_TOKENS", "UNK_ID", "TrainStats", "TrainedTokenizer",
    "WORD_PATTERNS", "SplitWords", "build_tokenizer", "compare_tokenizers", "count_split_words", "describe_tokenizer",
    "distinct_fraction", "distinct_words_by_bucket", "evaluate_tokenizer", "fit_tokenizer", "hf_tokenizer_kwargs",
    "iter_sentences", "load_tokenizer", "sample_keep", "split_alphabet", "train_tokenizer",
]  # fmt: skip


# ---- building ---------------------------------------------------------------------------------


def _normalizer(cfg: TokenizerSpec, bert_style: bool) -> normalizers.Normalizer:
    steps: list[normalizers.Normalizer] = [normalizers.NFC() if cfg.normalization == "NFC" else normalizers.NFKC()]
    if bert_style:
        # clean_text drops control characters; CJK ideographs become words of their own.
        steps.append(
            normalizers.BertNormalizer(
                clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=cfg.lowercase
            )
        )
    elif cfg.lowercase:
        steps.append(normalizers.Lowercase())
    return normalizers.Sequence(steps)


NOT_REPRODUCIBLE = {
    "unigram": "Unigram training in `tokenizers` is not byte-reproducible across processes: its EM sums float "
               "scores in Rust hash-map order (seeded per process; PYTHONHASHSEED, TOKENIZERS_PARALLELISM=false "
               "and RAYON_NUM_THREADS=1 do not fix it), so scores differ in the last bits and near-tied pieces "
               "swap ids; two fresh homes get different tokenizer.json and example shards (wordpiece and bpe "
               "are reproducible)",
}
"""Tokenizer kinds whose training gives different bytes in two fresh processes, and why (the stage warns)."""


def build_tokenizer(
    cfg: TokenizerSpec, pinned: Sequence[str] = (), alphabet: Sequence[str] = ()
) -> tuple[Tokenizer, trainers.Trainer]:
    """An untrained tokenizer and its trainer for `cfg.kind` and `cfg.family`.

    `pinned` tokens are numbered right after the special tokens, in the given order (see `fit_tokenizer`);
    `alphabet`: characters the wordpiece/bpe trainer keeps even if the text it is given lacks them.
    """
    specials = special_tokens(cfg.family)
    unk = "[UNK]" if cfg.family == "bert" else "<unk>"
    common = {"vocab_size": cfg.vocab_size, "special_tokens": [*specials, *pinned], "show_progress": False}
    if cfg.kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token=unk, continuing_subword_prefix="##"))
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece(prefix="##")
        trainer: trainers.Trainer = trainers.WordPieceTrainer(
            min_frequency=cfg.min_frequency, continuing_subword_prefix="##", initial_alphabet=list(alphabet), **common
        )
    elif cfg.kind == "bpe":
        tok = Tokenizer(models.BPE(unk_token=unk, end_of_word_suffix=BPE_SUFFIX))
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.BPEDecoder(suffix=BPE_SUFFIX)
        trainer = trainers.BpeTrainer(
            min_frequency=cfg.min_frequency, end_of_word_suffix=BPE_SUFFIX, initial_alphabet=list(alphabet), **common
        )
    elif cfg.kind == "bytelevel_bpe":
        tok = Tokenizer(models.BPE())  # every byte is in the alphabet: nothing is unknown
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            min_frequency=cfg.min_frequency, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), **common
        )
    elif cfg.kind == "unigram":
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
        # UnigramTrainer has no min_frequency: pieces are pruned by likelihood instead.
        trainer = trainers.UnigramTrainer(unk_token=unk, max_piece_length=16, **common)
    else:
        raise ValueError(f"tokenizer.kind: unknown kind {cfg.kind!r}")
    tok.normalizer = _normalizer(cfg, bert_style=cfg.kind in ("wordpiece", "bpe"))
    return tok, trainer


def _with_post_processor(tok: Tokenizer) -> Tokenizer:
    if tok.token_to_id("[CLS]") is None:
        return tok  # gpt family: no special tokens added (see module docstring)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return tok


# ---- reading the lake -------------------------------------------------------------------------


def lake_batches(
    files: Sequence[Path], split: str, columns: Sequence[str], batch_size: int = 2048
) -> Iterator[pa.RecordBatch]:
    """Record batches of one split with the requested columns (those a file has), row group by row group."""
    for path in files:
        pf = pq.ParquetFile(path)
        present = [c for c in columns if c in pf.schema_arrow.names]
        for batch in pf.iter_batches(batch_size=batch_size, columns=[*present, "split"]):
            kept = batch.filter(pc.equal(batch.column("split"), split))
            if kept.num_rows:
                yield kept


def iter_sentences(files: list[Path], split: str = "train", batch_size: int = 2048) -> Iterator[list[str]]:
    """Batches of sentences of one split, straight from the lake's Parquet row groups."""
    for batch in lake_batches(files, split, ["sentences"], batch_size):
        yield pc.list_flatten(batch.column("sentences")).to_pylist()


def iter_units(files: list[Path], split: str = "train", unit: str = "sentence", batch_size: int = 2048) -> Iterator[list[str]]:
    """Batches of sentences (`unit=sentence`) or of whole documents, their sentences joined in order (`document`)."""
    if unit == "sentence":
        yield from iter_sentences(files, split, batch_size)
        return
    for batch in lake_batches(files, split, ["sentences"], batch_size):
        yield [" ".join(doc) for doc in batch.column("sentences").to_pylist()]


def _sentence_bytes(sentences: pa.Array) -> int:
    flat = pc.list_flatten(sentences)
    return int(pc.sum(pc.binary_length(flat)).as_py() or 0)


def _split_bytes(files: Sequence[Path], split: str) -> int:
    """UTF-8 bytes of one split's sentences (reads only the `sentences` and `split` columns)."""
    return sum(_sentence_bytes(b.column("sentences")) for b in lake_batches(files, split, ["sentences"]))


def _bytes_upper_bound(files: Sequence[Path], split: str) -> int | None:
    """4 x the split's `n_chars` (UTF-8 needs at most 4 bytes a character), read without the text.

    Sentences come from the document text, so this bounds their bytes; None without `n_chars`.
    """
    total = 0
    for batch in lake_batches(files, split, ["n_chars"]):
        if "n_chars" not in batch.schema.names:
            return None
        total += 4 * int(pc.sum(batch.column("n_chars")).as_py() or 0)
    return total


def _doc_hash(doc_id: str) -> int:
    try:
        return int(doc_id, 16)
    except ValueError:  # lake ids are hex; anything else is hashed so sampling still works
        return int(hashlib.sha256(doc_id.encode()).hexdigest()[:16], 16)


def sample_keep(doc_ids: Sequence[str], fraction: float) -> np.ndarray:
    """Deterministic document sample: keep where `int(doc_id, 16) % 10**6 < fraction * 10**6`."""
    threshold = fraction * SAMPLE_MODULUS
    return np.fromiter((_doc_hash(d) % SAMPLE_MODULUS < threshold for d in doc_ids), dtype=bool, count=len(doc_ids))


# ---- distinct words -----------------------------------------------------------------------------

_PUNCT = r"\pP[:punct:]"  # BertPreTokenizer: Unicode punctuation (P*) or ASCII punctuation, one char each
_CJK = (r"\x{4E00}-\x{9FFF}\x{3400}-\x{4DBF}\x{20000}-\x{2A6DF}\x{2A700}-\x{2B73F}\x{2B740}-\x{2B81F}"
        r"\x{2B820}-\x{2CEAF}\x{F900}-\x{FAFF}\x{2F800}-\x{2FA1F}")  # BertNormalizer's handle_chinese_chars
WORD_PATTERNS = {
    "wordpiece": rf"[{_CJK}]|[^\s{_PUNCT}{_CJK}]+|[{_PUNCT}]",
    "bpe": rf"[{_CJK}]|[^\s{_PUNCT}{_CJK}]+|[{_PUNCT}]",
    # GPT-2's split (ByteLevel use_regex): contractions, letters, digits, other runs, each with one leading space.
    "bytelevel_bpe": r"'s|'t|'re|'ve|'m|'ll|'d| ?\pL+| ?\pN+| ?[^\s\pL\pN]+|\s+",
    "unigram": r"\S+",  # Metaspace: whitespace-separated pieces (each with its ▁)
}
"""RE2 patterns (DuckDB `regexp_extract_all`) splitting a sentence into the words the kind's trainer counts.
wordpiece/bpe match BertPreTokenizer after BertNormalizer (tested against it); the others are its
approximation (whitespace runs, NFKC). Only the sizing pass uses them, to count distinct words."""
COUNT_MEMORY_LIMIT = "512MB"
"""DuckDB's memory limit while counting distinct words: above it the aggregation spills to disk."""

_HASHED = pa.schema([("h", pa.int32()), ("sentences", pa.list_(pa.string()))])


def _hashed_batches(files: Sequence[Path], split: str) -> Iterator[pa.RecordBatch]:
    for batch in lake_batches(files, split, ["doc_id", "sentences"]):
        ids = batch.column("doc_id").to_pylist()
        h = np.fromiter((_doc_hash(d) % SAMPLE_MODULUS for d in ids), dtype=np.int32, count=len(ids))
        yield pa.record_batch([pa.array(h), batch.column("sentences")], schema=_HASHED)


class SplitWords(NamedTuple):
    """What the sizing pass learns about a split's words (`count_split_words`)."""

    by_bucket: np.ndarray
    """`by_bucket[b]` = distinct words whose smallest document hash bucket is `b`."""
    chars: frozenset[str]
    """Characters of the words."""
    inner_chars: frozenset[str]
    """Characters found after a word's first character (WordPiece's `##x`)."""
    last_chars: frozenset[str]
    """Characters found ending a word (BPE's `x</w>`)."""


def distinct_words_by_bucket(cfg: TokenizerSpec, files: Sequence[Path], split: str = "train") -> np.ndarray:
    """`out[b]` = distinct words (as `cfg.kind`'s trainer splits them) whose smallest document hash bucket
    (`_doc_hash(doc_id) % 10**6`) is `b`: a sample keeping buckets `< t` holds `out[:t].sum()` distinct words."""
    return count_split_words(cfg, files, split).by_bucket


def count_split_words(cfg: TokenizerSpec, files: Sequence[Path], split: str = "train") -> SplitWords:
    """The split's distinct words by smallest document hash bucket (`_doc_hash(doc_id) % 10**6`: a sample keeping
    buckets `< t` holds `by_bucket[:t].sum()` distinct words) and their characters by position.

    Counted exactly by DuckDB (`COUNT_MEMORY_LIMIT`, spilling to a temporary directory), one pass over the text.
    """
    import duckdb  # only the sizing pass of a large split needs it

    word = "nfc_normalize(s)" if cfg.kind in ("wordpiece", "bpe") else "s"
    if cfg.lowercase:
        word = f"lower({word})"
    reader = pa.RecordBatchReader.from_batches(_HASHED, _hashed_batches(files, split))
    with tempfile.TemporaryDirectory(prefix="plm-tok-distinct-") as spill:
        config = {"memory_limit": COUNT_MEMORY_LIMIT, "temp_directory": spill, "preserve_insertion_order": False}
        con = duckdb.connect(config=config)
        try:
            con.register("docs", reader)
            con.execute(f"""
                CREATE TEMP TABLE words AS
                WITH s AS (SELECT h, unnest(sentences) AS s FROM docs),
                     w AS (SELECT h, unnest(regexp_extract_all({word}, $pattern)) AS w FROM s)
                SELECT w, min(h) AS b FROM w GROUP BY w
            """, {"pattern": WORD_PATTERNS[cfg.kind]})  # fmt: skip
            rows = con.execute("SELECT b, count(*) AS n FROM words GROUP BY b").fetchnumpy()

            def chars(sql: str) -> frozenset[str]:
                return frozenset(c for (c,) in con.execute(sql).fetchall() if c)

            every = chars("SELECT DISTINCT unnest(string_split(w, '')) FROM words")
            inner = chars("SELECT DISTINCT unnest(string_split(substr(w, 2), '')) FROM words WHERE length(w) > 1")
            last = chars("SELECT DISTINCT right(w, 1) FROM words")
        finally:
            con.close()
    out = np.zeros(SAMPLE_MODULUS, dtype=np.int64)
    out[rows["b"].astype(np.int64)] = rows["n"]
    return SplitWords(out, every, inner, last)


def split_alphabet(cfg: TokenizerSpec, words: SplitWords) -> tuple[list[str], list[str]]:
    """(characters, their position-marked tokens: `##x` for wordpiece, `x</w>` for bpe) of the whole split, as
    the trainer sees them: each counted character through the tokenizer's normalizer (NFKC may expand it,
    clean_text drops control characters). A sampled training keeps them all, so that characters only in
    unsampled documents do not become unknown."""
    tok, _ = build_tokenizer(cfg)
    norm = {c: tok.normalizer.normalize_str(c) for c in words.chars | words.inner_chars | words.last_chars}
    every = {x for c in words.chars for x in norm[c]}
    if cfg.kind == "wordpiece":
        inner = {x for c in words.inner_chars for x in norm[c]} | {x for c in words.chars for x in norm[c][1:]}
        return sorted(every), sorted(f"##{x}" for x in inner)
    if cfg.kind == "bpe":
        return sorted(every), sorted(f"{norm[c][-1]}{BPE_SUFFIX}" for c in words.last_chars if norm[c])
    return [], []


def distinct_fraction(by_bucket: np.ndarray, max_distinct_words: int) -> tuple[float, int]:
    """(the largest sample fraction whose distinct words fit `max_distinct_words`, those words); 1.0 if all fit.

    The fraction is `(t - 0.5) / 10**6` for the largest bucket threshold `t`, so `sample_keep` keeps
    exactly the buckets `< t` whatever the float rounding."""
    cum = np.cumsum(by_bucket)
    if cum[-1] <= max_distinct_words:
        return 1.0, int(cum[-1])
    t = int(np.searchsorted(cum, max_distinct_words, side="right"))  # cum[t - 1] <= budget < cum[t]
    if t == 0:
        raise ValueError(f"tokenizer.max_distinct_words={max_distinct_words}: the documents of one hash bucket "
                         f"(1/{SAMPLE_MODULUS} of the split) already hold {int(cum[0])} distinct words")  # fmt: skip
    return (t - 0.5) / SAMPLE_MODULUS, int(cum[t - 1])


# ---- training ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainStats:
    """What the tokenizer was trained on."""

    sampled_fraction: float
    """1.0 unless the train split exceeded `max_train_bytes` and a document sample was used."""
    train_bytes: int
    """UTF-8 bytes of the sentences actually trained on."""
    train_sentences: int
    """Sentences actually trained on."""
    split_bytes: int
    """UTF-8 bytes of the whole train split."""
    distinct_words: int | None = None
    """Distinct words of the sample trained on (`WORD_PATTERNS`); None when the sizing pass did not count
    them (the split's bytes, an upper bound of its distinct words, were within `max_distinct_words`)."""
    split_distinct_words: int | None = None
    """Distinct words of the whole train split; None when not counted."""

    def as_metrics(self) -> dict[str, float]:
        """Flat `tokenizer_train.*` metrics for a tracker (counts that were not taken are left out)."""
        return {f"tokenizer_train.{k}": float(v) for k, v in asdict(self).items() if v is not None}


class TrainedTokenizer(NamedTuple):
    """`fit_tokenizer`'s result; unpacks as `tok, stats = fit_tokenizer(...)`."""

    tokenizer: Tokenizer
    stats: TrainStats


def fit_tokenizer(
    cfg: TokenizerSpec, files: list[Path], out_path: Path, progress: Progress = no_progress
) -> TrainedTokenizer:
    """Train on the train split (hash-sampled to `cfg.max_train_bytes` and `cfg.max_distinct_words`), save
    `tokenizer.json`, return stats."""
    # Exact sizing needs a pass over the text; skip it when the n_chars bound already fits both budgets
    # (a word is at least one byte, so bytes bound the distinct words too).
    bound = _bytes_upper_bound(files, "train")
    exact = bound is None or bound > min(cfg.max_train_bytes, cfg.max_distinct_words)
    split_bytes = _split_bytes(files, "train") if exact else None
    fraction = 1.0 if split_bytes is None or split_bytes <= cfg.max_train_bytes else cfg.max_train_bytes / split_bytes
    distinct = split_distinct = None
    alphabet: list[str] = []
    marked: list[str] = []
    if split_bytes is not None and split_bytes > cfg.max_distinct_words:
        words = count_split_words(cfg, files, "train")
        by_bucket = words.by_bucket
        split_distinct = int(by_bucket.sum())
        word_fraction, _ = distinct_fraction(by_bucket, cfg.max_distinct_words)
        fraction = min(fraction, word_fraction)
        # The sample's distinct words: the buckets it keeps (`sample_keep`'s rule).
        distinct = int(by_bucket[: int(np.ceil(fraction * SAMPLE_MODULUS))].sum())
        progress("tokenizer: distinct words", split_distinct, None)
        if fraction < 1:
            alphabet, marked = split_alphabet(cfg, words)
    tok, trainer = build_tokenizer(cfg, alphabet=alphabet)
    counted = {"bytes": 0, "sentences": 0}

    def batches() -> Iterator[list[str]]:
        for batch in lake_batches(files, "train", ["doc_id", "sentences"] if fraction < 1 else ["sentences"]):
            if fraction < 1:
                batch = batch.filter(pa.array(sample_keep(batch.column("doc_id").to_pylist(), fraction)))
            sentences = pc.list_flatten(batch.column("sentences"))
            counted["bytes"] += int(pc.sum(pc.binary_length(sentences)).as_py() or 0)
            counted["sentences"] += len(sentences)
            progress("tokenizer: sentences read", counted["sentences"], None)
            yield sentences.to_pylist()

    tok.train_from_iterator(batches(), trainer=trainer)
    pinned = sorted(set(_hash_ordered_tokens(cfg, tok)) | set(marked))
    if pinned:
        # tokenizers#1794: the trainer numbers these in hash-map order, and merge ties are broken by id, so
        # two processes train different vocabularies. Train again with them pinned in sorted order (as
        # special tokens, so numbered first), then make them ordinary vocabulary entries again. A sample
        # pins those of the whole split (`split_alphabet`), as the whole split's training would have them.
        tok, trainer = build_tokenizer(cfg, pinned, alphabet)
        counted.update(bytes=0, sentences=0)
        tok.train_from_iterator(batches(), trainer=trainer)
        tok = _unpin(tok, pinned)
    specials = special_tokens(cfg.family)
    if tok.get_vocab_size() <= len(specials):
        raise ValueError("tokenizer training produced no vocabulary: is the train split empty?")
    for i, token in enumerate(specials):
        if tok.token_to_id(token) != i:
            raise AssertionError(f"special token {token} must have id {i}")
    tok = _with_post_processor(tok)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_path))
    whole = counted["bytes"] if split_bytes is None else split_bytes  # unsampled: what was read is the split
    stats = TrainStats(fraction, counted["bytes"], counted["sentences"], whole, distinct, split_distinct)
    return TrainedTokenizer(tok, stats)


def _hash_ordered_tokens(cfg: TokenizerSpec, tok: Tokenizer) -> list[str]:
    """The vocabulary entries the BPE trainer numbers in hash-map order, sorted: single characters with the
    WordPiece continuing-subword prefix (`##x`) or the BPE end-of-word suffix (`x</w>`). Which ones exist does
    not depend on that order (every character seen inside/at the end of a word), only their ids do."""
    vocab = tok.get_vocab()
    if cfg.kind == "wordpiece":
        return sorted(t for t in vocab if t.startswith("##") and len(t) == 3)
    if cfg.kind == "bpe":
        return sorted(t for t in vocab if t.endswith(BPE_SUFFIX) and len(t) == 1 + len(BPE_SUFFIX))
    return []


def _unpin(tok: Tokenizer, pinned: list[str]) -> Tokenizer:
    """`tok` with the pinned tokens as plain vocabulary entries (same ids), no longer added special tokens."""
    data = json.loads(tok.to_str())
    drop = set(pinned)
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] not in drop]
    return Tokenizer.from_str(json.dumps(data, ensure_ascii=False))


def train_tokenizer(
    cfg: TokenizerSpec, files: list[Path], out_path: Path, progress: Progress = no_progress
) -> Tokenizer:
    """Train on the train split of the lake files and save `tokenizer.json` to `out_path` (see `fit_tokenizer`)."""
    return fit_tokenizer(cfg, files, out_path, progress).tokenizer


def load_tokenizer(path: Path) -> Tokenizer:
    """A saved `tokenizer.json`."""
    return Tokenizer.from_file(str(path))


# ---- evaluation -------------------------------------------------------------------------------


def evaluate_tokenizer(tok: Tokenizer, files: list[Path], split: str = "validation") -> dict[str, float]:
    """Fertility (tokens per whitespace word) overall and per language (`fertility.ko`, ...),
    unknown-token rate, bytes per token and vocabulary use (fraction of the vocabulary seen) on one split."""
    vocab = tok.get_vocab_size()
    unk = SpecialIds.from_tokenizer(tok).unk
    seen = np.zeros(vocab, dtype=np.int64)
    words: dict[str, int] = {}
    tokens: dict[str, int] = {}
    nbytes = 0
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)
    for batch in lake_batches(files, split, ["sentences", "lang"]):
        column = batch.column("sentences")
        sentences = pc.list_flatten(column).to_pylist()
        if not sentences:
            continue
        # One batched (parallel) encode per record batch; languages follow their documents.
        doc_langs = batch.column("lang").to_pylist() if "lang" in batch.schema.names else [""] * batch.num_rows
        per_doc = pc.list_value_length(column).fill_null(0).to_numpy(zero_copy_only=False)
        langs = np.repeat(np.asarray([lang or "" for lang in doc_langs], dtype=object), per_doc)
        encs = encode(sentences, add_special_tokens=False)
        lengths = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
        ids = np.fromiter((i for e in encs for i in e.ids), dtype=np.int64, count=int(lengths.sum()))
        seen += np.bincount(ids, minlength=vocab)[:vocab]
        n_words = np.fromiter((len(s.split()) for s in sentences), dtype=np.int64, count=len(sentences))
        for lang in set(langs):
            rows = langs == lang
            tokens[lang] = tokens.get(lang, 0) + int(lengths[rows].sum())
            words[lang] = words.get(lang, 0) + int(n_words[rows].sum())
        nbytes += _sentence_bytes(column)
    total = sum(tokens.values())
    if total == 0:
        return {"vocab_size": float(vocab)}
    metrics = {
        "vocab_size": float(vocab),
        "fertility": total / max(sum(words.values()), 1),
        "unk_rate": float(seen[unk]) / total if unk is not None else 0.0,
        "bytes_per_token": nbytes / total,
        "vocab_used": float(np.count_nonzero(seen)) / vocab,
        f"{split}_tokens": float(total),
    }
    for lang in sorted(k for k in tokens if k):
        metrics[f"fertility.{lang}"] = tokens[lang] / max(words[lang], 1)
    return metrics


def describe_tokenizer(tok: Tokenizer) -> dict[str, str]:
    """Model type, pre-tokenizer and decoder names, as read from the tokenizer itself."""
    return {
        "model": type(tok.model).__name__,
        "pre_tokenizer": type(tok.pre_tokenizer).__name__ if tok.pre_tokenizer else "",
        "family": family_of(tok),
    }


def compare_tokenizers(paths: dict[str, Path], files: list[Path], split: str = "validation") -> list[dict]:
    """One row per named `tokenizer.json`: its description and `evaluate_tokenizer` metrics on the same split."""
    rows = []
    for name, path in paths.items():
        tok = load_tokenizer(path)
        rows.append({"name": name, **describe_tokenizer(tok), **evaluate_tokenizer(tok, files, split)})
    return rows
