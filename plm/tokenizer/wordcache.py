"""Fast encoding for BERT-style tokenizers: vectorised pre-tokenization, each distinct word encoded once.

A tokenizer whose normaliser is `NFC|NFKC + BertNormalizer(clean_text, handle_chinese_chars, no accent
stripping)` and whose pre-tokenizer is `BertPreTokenizer` (plm's `wordpiece` and `bpe` kinds) maps
every whitespace/punctuation-delimited word independently. So a batch of sentences can be
normalised and split with Arrow's vectorised string kernels (RE2, utf8proc), its words
dictionary-encoded, only the *distinct* words run through the tokenizer's model, and the ids
gathered back with numpy. Natural text repeats words (Zipf), so the model sees ~10x fewer
strings, and no Python runs per sentence or per word.

Arrow's Unicode tables and lowercasing are not byte-for-byte Rust's, so the fast path is checked
against the tokenizer on a sample of every batch; a batch with any difference is encoded by the
tokenizer itself instead (counted in `WordCacheEncoder.fallbacks`). Tests check equality on
whole corpora, English and Korean.
"""

from __future__ import annotations

import json
import unicodedata
from itertools import repeat

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tokenizers import Tokenizer

# BertNormalizer.clean_text: NUL, U+FFFD and "other" characters (category C*) except \t \n \r are removed,
# whitespace (\t \n \r and category Zs) becomes a space. BertPreTokenizer then splits on Rust's
# char::is_whitespace, which also covers the line/paragraph separators (Zl, Zp) the normaliser keeps.
# The plain space is left out of the class: it already is one, and replacing every space with itself made this
# the costliest pass of the batch (half of `split_words`). The rest of Zs is listed (unchanged since Unicode 6.3).
_WHITESPACE = r"[\t\n\r\x{A0}\x{1680}\x{2000}-\x{200A}\x{202F}\x{205F}\x{3000}\x{2028}\x{2029}]"
_CONTROL = r"[\x{0}\x{FFFD}\p{C}]"
# handle_chinese_chars: CJK ideograph blocks padded with spaces (the ranges of BERT's _is_chinese_char).
_CJK = (
    r"[\x{4E00}-\x{9FFF}\x{3400}-\x{4DBF}\x{20000}-\x{2A6DF}\x{2A700}-\x{2B73F}"
    r"\x{2B740}-\x{2B81F}\x{2B820}-\x{2CEAF}\x{F900}-\x{FAFF}\x{2F800}-\x{2FA1F}]"
)
# BertPreTokenizer isolates ASCII punctuation and Unicode punctuation (category P*) as words of their own.
_PUNCT = r"[!-/:-@\[-`{-~\p{P}]"
MAX_CACHE = 1_000_000
"""Distinct words whose ids are kept between batches (~100 bytes each)."""
MODEL_CHUNKS = 16
"""Unseen words of a batch go to the model as this many pre-tokenized sequences (encoded in parallel)."""
CHECK_EVERY = 50
"""One sentence in this many (at least 8 per batch) is compared with the tokenizer's own encoding."""


def bert_style(tok: Tokenizer) -> dict | None:
    """The normaliser settings when `tok` is BERT-style (see module docstring), else None."""
    spec = json.loads(tok.to_str())
    norm, pre = spec.get("normalizer") or {}, spec.get("pre_tokenizer") or {}
    steps = norm.get("normalizers", []) if norm.get("type") == "Sequence" else []
    if pre.get("type") != "BertPreTokenizer" or len(steps) != 2 or spec["model"]["type"] not in ("WordPiece", "BPE"):
        return None
    form, bert = steps
    if form.get("type") not in ("NFC", "NFKC") or bert.get("type") != "BertNormalizer":
        return None
    if not (bert.get("clean_text") and bert.get("handle_chinese_chars")) or bert.get("strip_accents") is not False:
        return None
    if spec["model"]["type"] == "BPE" and spec["model"].get("dropout"):
        return None  # BPE dropout is random per call: words cannot be cached
    return {"form": form["type"], "lowercase": bool(bert.get("lowercase"))}


def split_words(texts: list[str], form: str, lowercase: bool) -> tuple[pa.Array, np.ndarray]:
    """Normalise and pre-tokenize like the tokenizer: (non-empty words, words per text)."""
    # Python's unicodedata, not Arrow's utf8_normalize: pyarrow 25 returns decomposed Hangul for "NFC".
    normal = [t if unicodedata.is_normalized(form, t) else unicodedata.normalize(form, t) for t in texts]
    x = pc.replace_substring_regex(pa.array(normal, pa.string()), _WHITESPACE, " ")
    x = pc.replace_substring_regex(x, _CONTROL, "")
    # CJK padding (normaliser) and punctuation isolation (pre-tokenizer) in one pass: lowercasing,
    # which comes between them in the tokenizer, neither creates nor removes either kind of character.
    x = pc.replace_substring_regex(x, f"{_CJK}|{_PUNCT}", r" \0 ")
    if lowercase:
        # Rust's char::to_lowercase maps U+0130 (İ) to "i̇" (SpecialCasing, the one unconditional
        # multi-character lowercase mapping); utf8proc maps it to a plain "i".
        x = pc.utf8_lower(pc.replace_substring(x, "\u0130", "i\u0307"))
    lists = pc.split_pattern(x, " ")
    words = pc.list_flatten(lists)
    parents = pc.list_parent_indices(lists).to_numpy()
    nonempty = pc.greater(pc.binary_length(words), 0)
    words = words.filter(nonempty)
    parents = parents[nonempty.to_numpy(zero_copy_only=False)]
    return words, np.bincount(parents, minlength=len(texts))


def _continuation_flags(tok: Tokenizer) -> np.ndarray | None:
    """WordPiece: per id, whether the token is a `##` continuation, when that tells a word's first token apart.

    The first piece of a word is the word's own prefix, so it starts with the continuation prefix only if the
    word does; the BERT pre-tokenizer isolates each punctuation character, so no word of two or more characters
    starts with a prefix made of two or more punctuation characters (`##`). [UNK] must not look like one."""
    model = json.loads(tok.to_str())["model"]
    prefix, unk = model.get("continuing_subword_prefix") or "", model.get("unk_token") or ""
    if model["type"] != "WordPiece" or len(prefix) < 2 or unk.startswith(prefix):
        return None
    if not all(unicodedata.category(c).startswith("P") or (c.isascii() and not c.isalnum() and c.isprintable() and c != " ")
               for c in prefix):  # fmt: skip
        return None
    flags = np.zeros(tok.get_vocab_size(), dtype=bool)
    for token, i in tok.get_vocab().items():
        flags[i] = token.startswith(prefix)
    return flags


class WordCacheEncoder:
    """Encodes batches of sentences to int32 ids like `tok.encode_batch(..., add_special_tokens=False)`.

    The cache maps each word seen to a slot; slot k's ids are `_ids[_start[k] : _start[k] + _len[k]]`, so a
    batch's ids are gathered with numpy (no array per word)."""

    def __init__(self, tok: Tokenizer, settings: dict) -> None:
        self.tok = tok
        self.form, self.lowercase = settings["form"], settings["lowercase"]
        self.model_only = Tokenizer.from_str(tok.to_str())  # same model, words arrive already normalised and split
        self.model_only.normalizer = None
        self.model_only.pre_tokenizer = None
        self.model_only.post_processor = None
        self.fallbacks = 0
        self.max_cache = MAX_CACHE
        self.continuation = _continuation_flags(tok)
        self._clear()

    def _clear(self) -> None:
        self.cache: dict[str, int] = {}
        self._ids = np.zeros(1 << 16, dtype=np.int32)
        self._n_ids = 0
        self._start = np.zeros(1 << 12, dtype=np.int64)
        self._len = np.zeros(1 << 12, dtype=np.int64)

    @classmethod
    def for_tokenizer(cls, tok: Tokenizer) -> WordCacheEncoder | None:
        settings = bert_style(tok)
        return cls(tok, settings) if settings is not None else None

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        """Token ids per text; identical to the tokenizer's own output (checked on a sample, see module doc)."""
        if not texts:
            return []
        words, per_text = split_words(texts, self.form, self.lowercase)
        encoded = pc.dictionary_encode(words)
        index = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        slots = self._slots(encoded.dictionary.to_pylist())
        piece_len = self._len[slots]
        lens = piece_len[index]  # tokens of each word occurrence
        total = int(lens.sum())
        # gather: the k-th token of word occurrence j is _ids[_start[slot of j] + k]
        out_start = np.cumsum(lens) - lens
        ids = self._ids[np.repeat(self._start[slots][index] - out_start, lens) + np.arange(total)]
        word_bounds = np.concatenate([[0], np.cumsum(per_text)])
        bounds = np.concatenate([[0], np.cumsum(lens)])[word_bounds].tolist()
        result = [ids[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        if not self._agrees(texts, result):
            self.fallbacks += 1
            return [np.asarray(e.ids, dtype=np.int32) for e in self.tok.encode_batch_fast(texts, add_special_tokens=False)]
        return result

    def _slots(self, distinct: list[str]) -> np.ndarray:
        """The cache slot of each distinct word, the model run only on words not seen before."""
        slots = np.fromiter(map(self.cache.get, distinct, repeat(-1)), dtype=np.int64, count=len(distinct))
        missing = np.flatnonzero(slots < 0)
        if len(missing):
            if len(self.cache) + len(missing) > self.max_cache:
                self._clear()  # bounded memory; a corpus's frequent words come back within a batch or two
                missing = np.arange(len(distinct))
            words = [distinct[i] for i in missing]
            ids, counts = self._model_pieces(words)
            slots[missing] = self._store(words, ids, counts)
        return slots

    def _store(self, words: list[str], ids: np.ndarray, counts: np.ndarray) -> np.ndarray:
        first, n = len(self.cache), len(words)
        if first + n > len(self._start):
            size = max(2 * len(self._start), first + n)
            self._start = np.resize(self._start, size)
            self._len = np.resize(self._len, size)
        if self._n_ids + len(ids) > len(self._ids):
            self._ids = np.resize(self._ids, max(2 * len(self._ids), self._n_ids + len(ids)))
        self._ids[self._n_ids : self._n_ids + len(ids)] = ids
        self._start[first : first + n] = self._n_ids + np.cumsum(counts) - counts
        self._len[first : first + n] = counts
        self._n_ids += len(ids)
        self.cache.update(zip(words, range(first, first + n)))
        return np.arange(first, first + n)

    def _model_pieces(self, words: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(ids of each word through the model alone, concatenated; tokens per word). The words go as a few
        pre-tokenized sequences (the model sees each word on its own, as it would as a sequence of its own),
        encoded in parallel: MODEL_CHUNKS Encodings instead of one per word (per-Encoding overhead was most of
        a cold-cache batch's model time). WordPiece: a word's tokens are its first piece and the `##` pieces
        after it, so the words are told apart by that flag and `encode_batch_fast` (no offsets, no word ids)
        suffices; a chunk where the count of first pieces is not its count of words takes the word-id path."""
        size = -(-len(words) // MODEL_CHUNKS)
        chunks = [words[i : i + size] for i in range(0, len(words), size)]
        cont = self.continuation
        if cont is not None:
            encodings = self.model_only.encode_batch_fast(chunks, is_pretokenized=True, add_special_tokens=False)
            ids = [np.asarray(enc.ids, dtype=np.int32) for enc in encodings]
            firsts = [np.flatnonzero(~cont[i]) for i in ids]
            if all(len(f) == len(c) and (not len(i) or f[0] == 0) for f, c, i in zip(firsts, chunks, ids)):
                flat = np.concatenate(ids)
                starts = np.concatenate([f + o for f, o in zip(firsts, np.cumsum([0] + [len(i) for i in ids[:-1]]))])
                return flat, np.diff(np.append(starts, len(flat)))
        # encode_batch, not _fast: the fast variant leaves word_ids unset
        encodings = self.model_only.encode_batch(chunks, is_pretokenized=True, add_special_tokens=False)
        all_ids, all_counts = [], []
        for chunk, enc in zip(chunks, encodings):
            word_of = np.asarray(enc.word_ids, dtype=np.int64)  # no special tokens: never None
            if len(word_of) and np.any(np.diff(word_of) < 0):
                raise AssertionError("tokenizer returned a pre-tokenized sequence's tokens out of word order")
            all_ids.append(np.asarray(enc.ids, dtype=np.int32))
            all_counts.append(np.bincount(word_of, minlength=len(chunk)))
        return np.concatenate(all_ids), np.concatenate(all_counts)

    def _agrees(self, texts: list[str], result: list[np.ndarray]) -> bool:
        step = max(1, min(CHECK_EVERY, len(texts) // 8))
        sample = list(range(0, len(texts), step))
        # the longest text too: long, messy sentences are where Unicode tables would differ
        sample.append(int(np.argmax(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)))))  # the first longest
        reference = self.tok.encode_batch_fast([texts[i] for i in sample], add_special_tokens=False)
        return all(np.array_equal(result[i], ref.ids) for i, ref in zip(sample, reference))
