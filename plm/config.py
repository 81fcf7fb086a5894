"""One typed pipeline spec: every field defaulted and documented; YAML files hold deltas.

Precedence: ``--set`` overrides > YAML file > defaults. Every error names the dotted key.
"""

from __future__ import annotations

import os
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator


class SpecError(ValueError):
    """A pipeline spec that cannot be used; the message names the offending dotted key."""


RUN_ONLY = {"run_only": True}
"""`json_schema_extra` of a field that never changes what a stage writes (logging cadence, batching, locks,
where to resume, where to run), or that a stage keys by content instead (the corpus paths and roots: the
sources' sha256s are the ingest input): `output_slice` leaves it out of the stage fingerprints. Marked here once."""


def run_only(default: Any, **kw: Any) -> Any:
    """A `Field` marked RUN_ONLY."""
    return Field(default, json_schema_extra=RUN_ONLY, **kw)


ADDED = {"fingerprint": "when_set"}
"""`json_schema_extra` of a field added after stage outputs already existed: left out of the fingerprint while
it holds its default (which reproduces the earlier behaviour), so adding it invalidates no finished output."""


def added(default: Any, **kw: Any) -> Any:
    """A `Field` marked ADDED."""
    return Field(default, json_schema_extra=ADDED, **kw)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True)


def run_only_fields(model: type[BaseModel]) -> frozenset[str]:
    """Names of the RUN_ONLY fields of one section class (not recursive)."""
    return frozenset(n for n, f in model.model_fields.items() if f.json_schema_extra == RUN_ONLY)


def _exclusions(section: BaseModel) -> dict[str, Any]:
    out: dict[str, Any] = {name: True for name in run_only_fields(type(section))}
    out |= {n: True for n, f in type(section).model_fields.items()
            if f.json_schema_extra == ADDED and getattr(section, n) == f.default}  # fmt: skip
    for name in type(section).model_fields:
        value = getattr(section, name)
        if name not in out and isinstance(value, BaseModel) and (sub := _exclusions(value)):
            out[name] = sub
    return out


def output_slice(section: BaseModel) -> dict[str, Any]:
    """The section as JSON without its RUN_ONLY fields, nor its ADDED ones at their default (at any depth):
    what a stage fingerprint covers."""
    return section.model_dump(mode="json", exclude=_exclusions(section) or None)


class CorpusSpec(_Section):
    paths: list[str] = run_only(["sample:enwiki", "sample:ko-constitution", "sample:ko-bills"])
    """Files, directories, globs or named samples (`sample:enwiki`, `sample:ko-constitution`, `sample:ko-bills`, `sample:lee`)."""
    text_unit: Literal["file", "paragraph", "line"] = "file"
    """How a plain-text file is cut into documents: whole file, blank-line blocks, or lines."""
    jsonl_text_field: str = "text"
    """Field of a JSONL/CSV/Parquet record that holds the document text."""
    id_field: str | None = None
    """Field/column of a JSON/CSV/Parquet record kept as the record's own id (`source_id`); None keeps none."""
    metadata_fields: list[str] = []
    """Fields/columns of a JSON/CSV/Parquet record kept as per-document metadata."""
    csv_delimiter: str | None = Field(None, min_length=1, max_length=1)
    """CSV/TSV delimiter; None sniffs it from the file's head (tab for `.tsv` when unsure)."""
    encoding: str = "auto"
    """Text encoding: `auto` (BOM, then UTF-8 / CP949 / charset-normalizer on a bounded prefix) or a Python codec name forced for every file."""
    max_record_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    """A line/paragraph/file/row larger than this is quarantined `too_large` (read in bounded chunks, never buffered whole)."""
    max_compression_ratio: float = Field(200.0, gt=1)
    """Decompressed/compressed ratio above which a compressed input is a `decompression_bomb` (once past `compression_ratio_min_bytes`)."""
    compression_ratio_min_bytes: int = Field(64 * 1024 * 1024, ge=0)
    """Decompressed bytes after which `max_compression_ratio` applies (small, highly compressible files are fine)."""
    max_decompressed_bytes: int = Field(32 * 1024**3, ge=1)
    """A compressed input that decompresses to more than this is a `decompression_bomb`."""
    allowed_roots: list[str] = run_only([])
    """Directories inputs must resolve into (symlinks followed); empty = current directory, PLM_HOME, the temp directory and the sample packages."""
    korean_sentences: Literal["kiwi", "regex"] = "kiwi"
    """Korean sentence splitter: `kiwi` (morphological, finds unpunctuated endings, ~0.05 MB/s) or `regex` (punctuation only, ~10 MB/s)."""

    @model_validator(mode="after")
    def _check_encoding(self) -> "CorpusSpec":
        import codecs

        if self.encoding != "auto":
            try:
                codecs.lookup(self.encoding)
            except LookupError:
                raise ValueError(f"corpus.encoding: unknown codec {self.encoding!r} (use `auto` or a Python codec name)") from None
        return self

    normalization: Literal["NFC", "NFKC"] = "NFC"
    """Unicode normal form applied to every document."""
    min_chars: int = Field(20, ge=0)
    """Documents shorter than this (after normalisation) are filtered with reason `too_short`."""
    max_chars: int = Field(2_000_000, gt=0)
    """Documents longer than this are filtered with reason `too_long`."""
    validation_fraction: float = Field(0.02, ge=0, lt=1)
    """Fraction of documents (by document hash) assigned to the validation split."""
    test_fraction: float = Field(0.0, ge=0, lt=1)
    """Fraction of documents (by document hash) assigned to the test split."""
    min_validation_docs: int = Field(10, ge=0)
    """A language with at least this many documents in a snapshot, but none in validation by hash, gets one: its train document with the smallest id moves (only when `validation_fraction` > 0; 0 disables). Small corpora then still have held-out data per language."""
    max_quarantined_fraction: float = run_only(0.5, ge=0, le=1)
    """The stage fails when more than this fraction of all rows read is quarantined."""
    max_symbol_ratio: float = Field(0.5, ge=0, le=1)
    """Documents whose share of characters that are neither letters, digits nor whitespace exceeds this are filtered (`too_many_symbols`)."""
    max_repeated_line_fraction: float = Field(0.5, ge=0, le=1)
    """Documents whose fraction of non-empty lines that repeat an earlier line exceeds this are filtered (`repeated_lines`)."""
    min_words: int = Field(3, ge=0)
    """Gopher word count: documents with fewer words (whitespace-separated; tokens of only punctuation or symbols are not words) are filtered (`too_few_words`); not applied to text written without spaces (Han, kana, Thai)."""
    max_words: int | None = Field(None, ge=1)
    """Gopher word count: documents with more words are filtered (`too_many_words`); None = no limit (Gopher uses 100,000)."""
    min_mean_word_length: float = Field(2.0, ge=0)
    """Gopher: documents whose mean word length (characters) is below this are filtered (`mean_word_length`); Gopher uses 3, 2 keeps Korean eojeol and tokenised punctuation-heavy text; not applied without spaces."""
    max_mean_word_length: float = Field(12.0, gt=0)
    """Gopher: documents whose mean word length is above this are filtered (`mean_word_length`: e.g. one byte repeated, base64, URLs); Gopher uses 10."""
    max_symbol_word_ratio: float = Field(0.1, ge=0)
    """Gopher: documents with more `#`, `...` and `…` per word than this are filtered (`symbol_words`)."""
    min_alpha_word_fraction: float = Field(0.6, ge=0, le=1)
    """Gopher: documents where fewer words than this fraction contain a letter (of any script: Hangul counts) are filtered (`alpha_words`); Gopher uses 0.8, which drops numbered Korean articles (`제1조 ① ...`) and number-heavy encyclopedia pages."""
    max_repeated_paragraph_fraction: float = Field(0.3, ge=0, le=1)
    """Gopher dup_para_frac: documents whose fraction of paragraphs (blank-line blocks) repeating an earlier one exceeds this are filtered (`repeated_paragraphs`)."""
    ngram_min_words: int = Field(50, ge=1)
    """The n-gram repetition rules apply to documents of at least this many words (shorter ones are too short for n-gram statistics)."""
    max_top_ngram_fraction: dict[Annotated[int, Field(ge=1, le=10)], Annotated[float, Field(ge=0, le=1)]] = {2: 0.2, 3: 0.18, 4: 0.16}
    """Gopher: n -> fraction; a document whose most frequent repeated word n-gram covers more of its characters (count x length) is filtered (`top_ngram`); {} disables."""
    max_duplicate_ngram_fraction: dict[Annotated[int, Field(ge=1, le=10)], Annotated[float, Field(ge=0, le=1)]] = {5: 0.3, 6: 0.28, 7: 0.26, 8: 0.24, 9: 0.22, 10: 0.2}
    """Gopher: n -> fraction; a document whose words covered by repeated n-grams hold more of its characters is filtered (`duplicate_ngrams`); {} disables. Gopher's 0.15..0.10 drop lyrics, lists and Korean bills of the shipped samples: twice those by default."""
    languages: list[str] = []
    """Keep only documents whose detected language is in this list (`wrong_language`); empty keeps every language."""
    detect_language: bool = False
    """Label `lang` with the py3langid model (ISO 639-1, ~5k documents/s) instead of the script heuristic (`ko` for Hangul, else `en`); always on when `languages` is set."""
    near_dup: bool = False
    """Drop near-duplicates (MinHash LSH, `corpus.minhash_*`) after exact dedup, reason `near_duplicate`."""
    near_dup_threshold: float = Field(0.8, gt=0, le=1)
    """Estimated Jaccard similarity of word shingles at or above which a document is a near-duplicate of an earlier one."""
    minhash_num_perm: int = Field(128, ge=8, le=1024)
    """MinHash signature length (hash functions); the estimate's standard error is sqrt(J(1-J)/num_perm)."""
    minhash_bands: int | None = Field(None, ge=1)
    """LSH bands (rows = num_perm // bands); None chooses them for `near_dup_threshold`, weighting misses 9:1 over spurious candidates."""
    minhash_shingle: int = Field(5, ge=1, le=64)
    """Shingle size in words (lower-cased, punctuation trimmed; Korean eojeol count as words)."""
    batch_records: int = run_only(20_000, ge=1)
    """Records per processing batch (a source is streamed in batches; each kept batch becomes one Parquet part)."""
    batch_bytes: int = run_only(32_000_000, ge=1000)
    """Raw text bytes per processing batch: with `batch_records`, bounds the ingest's memory."""
    range_bytes: int = run_only(128 * 1024 * 1024, ge=4096)
    """A larger uncompressed txt (line/paragraph) or JSONL file is mapped in byte ranges of about this size, cut where a unit starts (`plm.corpus.ranges`), each a job of its own (`runner`); the documents and catalog rows are the same as read whole, only the lake parts are cut per range too."""
    lock_timeout_s: float = run_only(60.0, ge=0)
    """Seconds an ingest waits for another ingest's catalog lock before failing with the holder's pid, host and start time."""


class TokenizerSpec(_Section):
    kind: Literal["wordpiece", "bpe", "bytelevel_bpe", "unigram"] = "wordpiece"
    """Tokenizer model trained with HF `tokenizers`: WordPiece (BERT), BPE, byte-level BPE (GPT-2), Unigram (SentencePiece; not byte-reproducible across processes, the stage warns)."""
    family: Literal["bert", "gpt"] = "bert"
    """Special tokens: `bert` = [PAD] [UNK] [CLS] [SEP] [MASK]; `gpt` = <|endoftext|> (+ <pad>, <unk>, <mask>)."""
    vocab_size: int = Field(8000, ge=64)
    """Target vocabulary size, special tokens included."""
    min_frequency: int = Field(2, ge=1)
    """Minimum pair/word frequency for a merge or vocabulary entry."""
    lowercase: bool = False
    """Lowercase before tokenizing (accents are never stripped: that breaks Hangul)."""
    normalization: Literal["NFC", "NFKC"] = "NFC"
    """Unicode normal form applied by the tokenizer's normaliser."""
    max_train_bytes: int = Field(1_000_000_000, ge=1000)
    """Memory budget for training text; above it a deterministic hash sample of documents is used (and logged)."""
    max_distinct_words: int = Field(1_000_000, ge=1000)
    """Memory budget in distinct words, what the trainer's memory follows (about 1.3 KB each; bytes bound it only loosely): the sizing pass counts the train split's distinct words (as the kind's pre-tokenizer splits them) and trains on the largest document hash sample that holds at most this many (logged). Peak RSS ~= 0.4 GB + 1.3 KB x this: the default kept a 1 GB long-tailed corpus (5.4 M distinct words) at 1.65 GB."""


class SkipgramSpec(_Section):
    window: int = Field(5, ge=1)
    """Maximum window radius; each center draws its radius uniformly from 1..window (word2vec's dynamic window)."""
    negatives: int = Field(5, ge=1)
    """Negative samples per positive pair, drawn from the unigram^0.75 distribution."""
    min_count: int = Field(5, ge=1)
    """Words rarer than this are dropped from the vocabulary."""
    subsample: float = Field(1e-3, ge=0)
    """Frequent-word subsampling threshold t: keep probability min(1, (sqrt(f/t)+1)*t/f); 0 disables it."""
    cbow: bool = False
    """Emit CBOW examples (context bag -> center) instead of skip-gram pairs."""
    lowercase: bool = True
    """Lowercase words before counting."""
    word_unit: Literal["eojeol", "morpheme"] = added("eojeol")
    """What a word is: `eojeol` = a Unicode `\\w+` run (a Korean eojeol, 학교에서, stays whole); `morpheme` = Kiwi's morphemes (학교 + 에서; 했다 -> 하 + 었 + 다), for Korean text. The vectors' `config.json` records it, so fine-tuning and serving split text the same way."""
    shard_size: int = Field(1_000_000, ge=1)
    """Pairs per Parquet shard."""
    unit: Literal["sentence", "document"] = "sentence"
    """What a window may span: one lake sentence, or a whole document (its sentences in order): document-level co-occurrence, what sentiment and topic features need."""
    contexts: int = Field(0, ge=0)
    """0: every position of the dynamic window (word2vec); k > 0: k context positions drawn uniformly from +-`window` per kept center (a wide, sampled window; `model.engine=compiled` only)."""
    train_shards: bool = True
    """Write training pair shards (the torch engine replays them in epoch 1); False writes only the vocabulary and held-out shards (the compiled engine draws its own pairs, as gensim)."""


class CooccurrenceSpec(_Section):
    window: int = Field(10, ge=1)
    """Context radius in words: pairs within `window` of each other in a sentence (GloVe's `-window-size`)."""
    distance_weighting: bool = True
    """A pair d words apart adds 1/d (GloVe's default); False adds 1."""
    symmetric: bool = True
    """Count left and right contexts (X_ij = X_ji); False counts only the context to the left of each word (GloVe `-symmetric 0`)."""
    min_count: int = Field(5, ge=1)
    """Words rarer than this are dropped from the vocabulary (and from the sentences) before counting."""
    lowercase: bool = True
    """Lowercase words before counting."""
    shard_tokens: int = Field(2_000_000, ge=1)
    """Corpus tokens per counting shard: bounds the memory of a shard's partial counts."""
    merge_parts: int = Field(4, ge=1)
    """Output Parquet parts of the merged counts (by word id modulo parts): each is aggregated on its own."""


class ClmSpec(_Section):
    boundary_mask: bool = False
    """Also store per-token document indices so attention can be kept inside each packed document."""


class ObjectivesSpec(_Section):
    kinds: list[Literal["mlm", "nsp", "sop", "clm", "skipgram", "cooccurrence"]] = ["mlm", "nsp"]
    """Objectives to generate examples for: mlm+nsp (BERT), mlm+sop (ALBERT-style), mlm alone, clm (GPT), skipgram (word2vec, fastText), cooccurrence (GloVe)."""
    mlm_mode: Literal["exact", "bernoulli"] = "exact"
    """`exact`: k = min(max_predictions, max(1, round(n*p))) positions (BERT); `bernoulli`: each token with probability p (HF collator)."""
    whole_word: Literal["none", "word", "morpheme"] = "none"
    """Whole-word masking groups: `word` = pre-tokenizer words (WordPiece ## groups, byte-level words, Korean eojeol); `morpheme` = kiwipiepy morphemes for Korean."""
    masking: Literal["static", "dynamic"] = "static"
    """`static`: masks written into the shards (x dupe_factor); `dynamic`: shards keep clean ids and the loader masks each batch."""
    docs_per_shard: int = Field(256, ge=1)
    """Documents per generation shard; each (objective, shard, copy) has its own RNG stream, so output is independent of workers."""
    workers: int = Field(1, ge=1)
    """Processes generating shards in parallel (output is byte-identical for any value)."""
    seq_len: int = Field(128, ge=16)
    """Maximum sequence length in tokens, [CLS] and [SEP]s included."""
    mlm_probability: float = Field(0.15, gt=0, lt=1)
    """Fraction of tokens selected for prediction."""
    max_predictions: int = Field(20, ge=1)
    """Cap on predicted positions per sequence (BERT's max_predictions_per_seq)."""
    mask_fraction: float = Field(0.8, ge=0, le=1)
    """Of the selected positions, the fraction replaced by [MASK]."""
    random_fraction: float = Field(0.1, ge=0, le=1)
    """Of the selected positions, the fraction replaced by a random non-special token; the rest stay unchanged."""
    nsp_random_fraction: float = Field(0.5, ge=0, le=1)
    """Fraction of pairs whose segment B comes from another document (NSP label 1)."""
    short_seq_prob: float = Field(0.1, ge=0, le=1)
    """Probability of a shorter target length (BERT's short_seq_prob)."""
    dupe_factor: int = Field(2, ge=1)
    """Number of passes over the corpus with different masks and pairings."""
    seed: int = 1234
    """Seed of pair creation and masking (each split and copy derives its own stream from it)."""
    tolerance: float = Field(0.03, gt=0, le=1)
    """Allowed absolute deviation of realised mask/NSP statistics from their targets; the stage fails beyond it."""
    skipgram: SkipgramSpec = SkipgramSpec()
    """Skip-gram / CBOW pairs with negative sampling (word2vec)."""
    clm: ClmSpec = ClmSpec()
    """Causal-LM packing."""
    cooccurrence: CooccurrenceSpec = CooccurrenceSpec()
    """Word-word co-occurrence counts (GloVe)."""

    @model_validator(mode="after")
    def _fractions(self) -> ObjectivesSpec:
        if self.mask_fraction + self.random_fraction > 1:
            raise ValueError("objectives.mask_fraction + objectives.random_fraction must be <= 1")
        kinds = set(self.kinds)
        if not kinds:
            raise ValueError("objectives.kinds must name at least one objective")
        if "mlm" in kinds and len(kinds & {"nsp", "sop"}) != 1:
            raise ValueError("objectives.kinds: mlm goes with exactly one of nsp or sop (the encoder trains both heads)")
        if kinds & {"nsp", "sop"} and "mlm" not in kinds:
            raise ValueError("objectives.kinds: nsp and sop are generated together with mlm")
        if self.masking == "dynamic" and self.whole_word != "none":
            raise ValueError("objectives.masking=dynamic works on token ids only: set objectives.whole_word=none")
        return self


MODEL_SIZES: dict[str, dict[str, int]] = {
    "debug": {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "intermediate_size": 256},
    "small": {"hidden_size": 256, "num_layers": 4, "num_heads": 4, "intermediate_size": 1024},
    "base": {"hidden_size": 768, "num_layers": 12, "num_heads": 12, "intermediate_size": 3072},
}


class _TransformerSpec(_Section):
    size: Literal["debug", "small", "base"] = "small"
    """Size preset (`base` = BERT-base 110M / GPT-2 124M); explicit dimensions below override it."""
    hidden_size: int | None = None
    """Width of the residual stream (default from `size`)."""
    num_layers: int | None = None
    """Number of transformer blocks (default from `size`)."""
    num_heads: int | None = None
    """Attention heads per block (default from `size`)."""
    intermediate_size: int | None = None
    """Width of the feed-forward layer (default from `size`)."""
    dropout: float = Field(0.1, ge=0, lt=1)
    """Dropout on embeddings, attention probabilities and residual branches."""
    attention_dropout: float | None = Field(None, ge=0, lt=1)
    """Dropout on attention probabilities; None = `dropout`. 0 lets CPU SDPA use its fused kernel (~25 % faster)."""

    def label(self) -> str:
        """`<arch>-<size>` (e.g. `bert-small`): names task runs and registered artefacts."""
        return f"{self.arch}-{self.size}"  # type: ignore[attr-defined]

    def dims(self) -> dict[str, int]:
        """The size preset with explicit overrides applied."""
        dims = dict(MODEL_SIZES[self.size])
        for key in dims:
            value = getattr(self, key)
            if value is not None:
                dims[key] = value
        if dims["hidden_size"] % dims["num_heads"]:
            raise SpecError("model.hidden_size must be divisible by model.num_heads")
        return dims


class BertSpec(_TransformerSpec):
    arch: Literal["bert"] = "bert"
    """Model family: `bert` (encoder, MLM + NSP/SOP), `gpt` (decoder, CLM) or `word2vec` (SGNS/CBOW)."""
    norm: Literal["post", "pre"] = "post"
    """Where LayerNorm sits: `post` (original BERT) or `pre` (Megatron-BERT layout, exported as HF `MegatronBertForPreTraining`; more stable for deep or high-LR runs)."""
    max_position: int = Field(512, ge=16)
    """Number of learned position embeddings."""


class GptSpec(_TransformerSpec):
    arch: Literal["gpt"] = "gpt"
    """Model family: `bert` (encoder, MLM + NSP/SOP), `gpt` (decoder, CLM) or `word2vec` (SGNS/CBOW)."""
    max_position: int = Field(1024, ge=16)
    """Number of learned position embeddings (GPT-2: 1024)."""


class Word2VecSpec(_Section):
    arch: Literal["word2vec"] = "word2vec"
    """Model family: `bert` (encoder, MLM + NSP/SOP), `gpt` (decoder, CLM) or `word2vec` (SGNS/CBOW)."""
    dim: int = Field(100, ge=2)
    """Vector size."""
    epochs: int = Field(5, ge=1)
    """Passes over the corpus (epoch 1 replays the skip-gram shards, later ones are drawn afresh unless `regenerate` is off)."""
    lr: float = Field(0.025, gt=0)
    """Starting learning rate, decayed linearly to `min_lr` over the run (word2vec)."""
    min_lr: float = Field(1e-4, ge=0)
    """Final learning rate."""
    batch_size: int = Field(1024, ge=1)
    """Positive pairs per update (each with its negatives); 1024 trains faster than 4096 on a CPU, same quality."""
    regenerate: bool = True
    """Epochs after the first draw fresh subsampling, windows and negatives (as gensim); False replays the example shards."""
    log_every: int = run_only(50, ge=1)
    """Log loss, learning rate, words/s and pairs/s every N updates."""
    analogy_vocab: int = Field(30_000, ge=1)
    """Analogy evaluation searches only the N most frequent words (gensim's `restrict_vocab`)."""
    threads: int = Field(1, ge=0)
    """CPU threads for the updates (0 = all cores). torch engine: the scatter-heavy steps scale poorly, 1 wins on a busy host; compiled engine: lock-free (Hogwild) threads, bit-for-bit reproducible only with 1."""
    engine: Literal["torch", "compiled"] = "torch"
    """`torch`: batched sparse SGD over the example shards (epoch 1 replays them exactly); `compiled`: word2vec's own per-pair loop compiled with numba over the encoded corpus (faster, supports `objectives.skipgram.contexts`)."""

    def label(self) -> str:
        """`word2vec-<dim>d`: names task runs and registered artefacts."""
        return f"word2vec-{self.dim}d"


class FastTextSpec(Word2VecSpec):
    """fastText: word2vec's training (the same skip-gram / CBOW examples, loop and schedule) on words plus
    hashed character n-grams of `<word>`; unseen words get the mean of their n-gram vectors."""

    arch: Literal["fasttext"] = "fasttext"  # type: ignore[assignment]
    """Model family: `bert`, `gpt`, `word2vec`, `fasttext` (subword skip-gram / CBOW) or `glove`."""
    lr: float = Field(0.05, gt=0)
    """Starting learning rate, decayed linearly to `min_lr` (fastText's skip-gram default 0.05)."""
    minn: int = Field(3, ge=1)
    """Shortest character n-gram (fastText `-minn`); Korean syllables count as one character each."""
    maxn: int = Field(6, ge=0)
    """Longest character n-gram (fastText `-maxn`); 0 = no n-grams (word2vec with fastText's files)."""
    buckets: int = Field(2_000_000, ge=0)
    """Hash buckets shared by all n-grams (fastText `-bucket`); each holds one `dim` vector (2M x 100 = 800 MB)."""
    subword: Literal["char", "jamo"] = added("char")
    """What the n-grams run over: `char` (fastText: code points, a Hangul syllable is one) or `jamo` (each Hangul syllable decomposed into its 2-3 conjoining jamo first, as NFD does; Park et al. 2018). A jamo model's `.bin` / `.vec` hold the words decomposed, so fastText's tools see the same n-grams: query them with `plm.objectives.subwords.decompose_jamo(word)` (NFD on Hangul)."""

    @model_validator(mode="after")
    def _ngram_range(self) -> FastTextSpec:
        if self.maxn and self.maxn < self.minn:
            raise ValueError("model.maxn must be 0 (no n-grams) or >= model.minn")
        if self.engine != "torch":
            raise ValueError("model.engine: fastText trains with the torch engine (its n-gram updates are batched there)")
        return self

    def label(self) -> str:
        """`fasttext-<dim>d`: names task runs and registered artefacts."""
        return f"fasttext-{self.dim}d"


class GloveSpec(_Section):
    arch: Literal["glove"] = "glove"
    """Model family: `bert`, `gpt`, `word2vec`, `fasttext` or `glove` (weighted least squares on co-occurrences)."""
    dim: int = Field(100, ge=2)
    """Vector size."""
    epochs: int = Field(25, ge=1)
    """Passes over the non-zero co-occurrence entries (GloVe's `-iter`, 25 in its demo)."""
    lr: float = Field(0.05, gt=0)
    """AdaGrad learning rate (GloVe's `-eta`)."""
    initial_accumulator: float = Field(0.0, ge=0)
    """AdaGrad's starting sum of squared gradients: 0 (AdaGrad, PyTorch); GloVe's C code uses 1, which barely trains on small corpora."""
    x_max: float = Field(100.0, gt=0)
    """Weighting cut-off: f(x) = min(1, (x / x_max)^alpha) (the paper's 100)."""
    alpha: float = Field(0.75, gt=0)
    """Weighting exponent (the paper's 3/4)."""
    batch_size: int = Field(4096, ge=1)
    """Co-occurrence entries per AdaGrad update."""
    log_every: int = run_only(50, ge=1)
    """Log loss and entries/s every N updates."""
    analogy_vocab: int = Field(30_000, ge=1)
    """Analogy evaluation searches only the N most frequent words."""
    threads: int = Field(1, ge=0)
    """CPU threads for the updates (0 = torch's default)."""

    def label(self) -> str:
        """`glove-<dim>d`: names task runs and registered artefacts."""
        return f"glove-{self.dim}d"


ModelSpec = Annotated[BertSpec | GptSpec | Word2VecSpec | FastTextSpec | GloveSpec, Field(discriminator="arch")]
WORD_VECTOR_ARCHS = ("word2vec", "fasttext", "glove")
"""Families whose pretrained model is a table of word vectors (fine-tuned with the `embeddings` strategy)."""


class TrainSpec(_Section):
    steps: int = Field(300, ge=1)
    """Optimizer steps of pretraining."""
    batch_size: int = Field(32, ge=1)
    """Sequences per optimizer step."""
    lr: float = Field(5e-4, gt=0)
    """Peak learning rate (AdamW)."""
    warmup_steps: int = Field(30, ge=0)
    """Linear warmup steps, then `schedule` decay."""
    weight_decay: float = Field(0.01, ge=0)
    """AdamW weight decay (never on biases and LayerNorm weights)."""
    grad_clip: float = Field(1.0, gt=0)
    """Gradient-norm clipping threshold."""
    seed: int = 1234
    """Seed for initialisation, data order and dropout."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """`auto` picks CUDA when present, else CPU."""
    log_every: int = run_only(10, ge=1)
    """Log training metrics every N steps."""
    eval_batches: int = Field(8, ge=1)
    """Held-out batches evaluated at the end (and at every checkpoint, to keep the best one)."""
    grad_accum: int = Field(1, ge=1)
    """Micro-batches per optimizer step: each holds batch_size / (grad_accum x world size) sequences."""
    nproc: int = added(1, ge=1)
    """Data-parallel processes on this node: above 1 the pretrain stage launches `torch.distributed.run` itself (DDP or FSDP2 per `parallel`: gloo on CPU, NCCL with one GPU per process; `plm pretrain --nproc N`); multi-node through torchrun's `PET_NNODES` / `PET_NODE_RANK` / `PET_RDZV_ENDPOINT` environment variables. Each process reads every N-th shard, so the weights differ from one process: part of the fingerprint."""
    parallel: Literal["ddp", "fsdp"] = added("ddp")
    """How `nproc` > 1 processes share the model: `ddp` (every process holds all of it; gradients all-reduced) or `fsdp` (FSDP2, for models that do not fit one GPU: each transformer block, then the rest, sharded over the processes and all-gathered just before it runs; bf16 parameters and fp32 gradient reduction on CUDA, fp32 on CPU; `plm pretrain --parallel fsdp`). Checkpoints and the model folder are the same files either way. Same global batch as `ddp`, but the gradient reductions sum in another order, so the weights agree only to float rounding: part of the fingerprint when set. Needs `nproc` > 1."""
    schedule: Literal["linear", "cosine"] = "linear"
    """Decay after warmup: linear to zero, or cosine down to `min_lr_ratio` x lr."""
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    """`cosine`: final learning rate as a fraction of the peak."""
    compile: Literal["auto", "on", "off"] = "auto"
    """`torch.compile` the model: `auto` = on CUDA only (compilation costs more than it saves on CPU)."""
    prefetch: int = run_only(4, ge=0)
    """Batches prepared ahead by a background thread (0: prepare in the training loop)."""
    shuffle_buffer: int = Field(8192, ge=1)
    """Rows per shuffle buffer of the streaming loader (memory bound; rows are shuffled within a buffer)."""
    checkpoint_every: int = run_only(0, ge=0)
    """Write a resumable checkpoint every N steps (0: only the final one)."""
    keep_checkpoints: int = run_only(2, ge=1)
    """Periodic checkpoints kept (the latest N), besides `best.pt` (lowest held-out loss at a checkpoint)."""
    resume: bool = run_only(False)
    """Continue from the latest checkpoint of an interrupted run of the same spec and data (`plm pretrain --resume`)."""

    @model_validator(mode="after")
    def _warmup(self) -> TrainSpec:
        if self.warmup_steps >= self.steps:
            raise ValueError("train.warmup_steps must be < train.steps")
        if self.batch_size % self.grad_accum:
            raise ValueError("train.batch_size must be divisible by train.grad_accum")
        if self.batch_size % (self.grad_accum * self.nproc):
            raise ValueError("train.batch_size must be divisible by train.grad_accum x train.nproc")
        if self.parallel == "fsdp" and self.nproc == 1:
            raise ValueError("train.parallel=fsdp shards the model over train.nproc processes: set train.nproc > 1 "
                             "(one process holds the whole model; leave train.parallel at ddp)")
        return self


class FinetuneSpec(_Section):
    task: str = "sentiment"
    """Task name; the registered model is `<pipeline>-<task>`."""
    task_type: Literal["classification", "pair_classification", "regression", "qa"] = "classification"
    """`classification` (one text), `pair_classification` / `regression` (`[CLS] A [SEP] B [SEP]`), `qa` (extractive, SQuAD JSON)."""
    data: str = "sample:polarity"
    """Labelled data: a file path (resolved and checked against `corpus.allowed_roots` before it is opened) or `sample:polarity` (gensim's movie-review polarity sentences)."""
    _data_roots: list[str] = PrivateAttr(default_factory=list)
    # `corpus.allowed_roots`, handed over by PipelineSpec (not part of this slice's fingerprint): empty = the defaults
    format: Literal["fasttext", "csv", "jsonl", "parquet", "squad"] = "fasttext"
    """`fasttext` lines are `__label__X text`; csv/jsonl/parquet use the column names below; `squad` is SQuAD-format JSON (task_type qa)."""
    text_column: str = "text"
    """Column holding the input text (csv/jsonl/parquet)."""
    text_pair_column: str = "text_pair"
    """Column holding the second text of pair tasks; empty makes `regression` single-text."""
    label_column: str = "label"
    """Column holding the label (a class name, or a number for `regression`)."""
    encoding: str = added("auto")
    """Text encoding of the labelled file: `auto` (sniffed as `corpus.encoding: auto` sniffs corpus files, on a bounded prefix) or a Python codec name; rows that do not decode are quarantined `undecodable:<encoding>`."""
    test_fraction: float = Field(0.2, gt=0, lt=1)
    """Fraction held out for testing, chosen deterministically by text hash (QA: by context, so no context leaks)."""
    split_column: str | None = None
    """Column whose value `test` marks the held-out rows (a fixed, published split such as `sample:imdb`'s); None = the hash split by `test_fraction`."""
    train_labels: int | None = Field(None, ge=1)
    """Labelled examples the finetune stage trains on: a seeded subset of the train split (None = all of it)."""
    seq_len: int = Field(64, ge=8)
    """Maximum tokens per example (per QA window), [CLS] and [SEP] included."""
    max_words: int | None = Field(None, ge=1)
    """Word-vector strategies (`features`, `embeddings`): words read per text (None = `seq_len`)."""
    doc_stride: int = Field(32, ge=1)
    """`qa`: tokens between the starts of consecutive context windows (BERT's doc_stride)."""
    max_query_len: int = Field(24, ge=1)
    """`qa`: questions are cut to this many tokens."""
    max_answer_len: int = Field(30, ge=1)
    """`qa`: longest answer span considered at prediction, in tokens."""
    epochs: int = Field(8, ge=1)
    """Passes over the training split."""
    eval_each_epoch: bool = True
    """Score the test split after every epoch (curves in MLflow); False scores it once, after the last (the transfer report always does)."""
    batch_size: int = Field(16, ge=1)
    """Examples per optimizer step."""
    lr: float = Field(1e-4, gt=0)
    """Peak learning rate (AdamW, linear warmup over 10 % then decay)."""
    seed: int = 1234
    """Seed shared by the pretrained and the from-scratch run."""
    compare_scratch: bool = True
    """Also train the same architecture from random weights with the same seed and budget."""
    strategy: Literal["full", "frozen", "discriminative", "embeddings", "features", "scratch", "zero_shot"] = "full"
    """How the pretrained model is transferred: train all, fixed encoder (decoder), layer-wise LRs, word2vec `embeddings` (an MLP over the vectors), `features` (a cross-validated logistic regression on fixed features: word vectors' mean unit word vector, or a GPT decoder's mean final hidden state), `scratch` (random init), or `zero_shot` (a GPT decoder scores label verbalisers; nothing trains)."""
    layer_decay: float = Field(0.8, gt=0, le=1)
    """`discriminative`: learning rate multiplier per layer going down from the head."""
    gradual_unfreeze: bool = False
    """`discriminative`: unfreeze one more layer group from the top each epoch (ULMFiT)."""
    embeddings_trainable: bool = False
    """`embeddings`: fine-tune the pretrained word vectors too (False: they stay fixed, the feature-based approach)."""
    embeddings_hidden: int = Field(128, ge=1)
    """`embeddings`: width of the MLP over the mean-pooled word vectors."""
    subword_oov: bool = added(True)
    """`embeddings` / `features` on a fastText parent: a word outside its vocabulary gets its n-gram vector (fastText's `get_word_vector`); False leaves it unknown, as word2vec and GloVe do."""
    subword_table: Literal["float32", "float16", "none"] = added("float32")
    """`embeddings` / `features` on a fastText parent (with `subword_oov`): how the classifier keeps the parent's n-gram bucket rows (`subwords.safetensors`), so a word first met when served gets the n-gram vector training would have given it: `float32` (exact; buckets x dim x 4 bytes, 80 MB at 200k x 100), `float16` (half that; training then uses the same rounded rows, so served and in-process predictions still agree), or `none` (only the task's words keep their n-gram vectors; any other word is unknown when served)."""
    init: str | None = Field(None, pattern=r"^models:/[A-Za-z0-9][A-Za-z0-9_.-]*(@[A-Za-z0-9_-]+|/[0-9]+)$")
    """Start the fine-tune from a registered model, `models:/<name>@<alias>` or `models:/<name>/<version>` (a BERT or GPT classifier, encoder or decoder with this pipeline's tokenizer, or a word-vector classifier, `embeddings` or `features`, which starts this pipeline's word-vector family from its table); its task head is kept when its labels equal this task's, else replaced. The candidate is `init: registered`, its version's `plm.parent.*` tags name the parent; `plm transfer` adds `registered` rows beside pretrained and scratch. None = this pipeline's pretrained model."""
    lm_aux_weight: float = Field(0.5, ge=0)
    """GPT fine-tuning: weight of the language-model loss on the input kept as an auxiliary objective (GPT-1: 0.5; 0 = task loss only)."""
    head_init: Literal["new", "probe"] = added("new")
    """GPT fine-tuning (`full`, `frozen`, `discriminative` and their scratch twin): `new` reads GPT-1's `<start> text <extract>` into a randomly initialised head; `probe` reads the `features` input (`<|endoftext|> text`, the mean of the final states; pairs `[u, v, |u - v|, u * v]`) and starts the head from the cross-validated logistic regression on the still-untrained decoder's states, then trains as the strategy says (linear probing, then fine-tuning: Kumar et al. 2022). A classification head only."""
    pair_orderings: Literal["one", "both"] = added("one")
    """GPT fine-tuning of a pair task: `one` reads `<start> A <delim> B <extract>`; `both` also reads `<start> B <delim> A <extract>` and sums the two `<extract>` states before the head (GPT-1's input for similarity tasks, whose pairs have no order)."""
    verbalizers: dict[str, str] = {}
    """`zero_shot`: label -> the text whose likelihood after the prompt stands for it (e.g. `{positive: " great", negative: " terrible"}`); empty = `" <label>"`."""
    zero_shot_template: str = "{text}"
    """`zero_shot`: the prompt, with `{text}` (and `{text_pair}` for pairs); the verbaliser is scored as its continuation."""
    zero_shot_calibrate: bool = False
    """`zero_shot`: subtract each verbaliser's score after the content-free input "N/A" (contextual calibration, Zhao et al. 2021)."""
    transfer_strategies: list[Literal["full", "frozen", "discriminative", "embeddings", "features", "scratch", "zero_shot"]] = [
        "full", "frozen", "discriminative"
    ]
    """`plm transfer`: strategies compared, each from pretrained weights and from scratch; word-vector strategies (`features`, `embeddings`) use `model` (arch word2vec) or `word_vectors`, and `features` also applies to a GPT `model` (its frozen decoder's mean states); `zero_shot` (gpt) is one row at 0 labels."""
    transfer_fractions: list[float] = [0.1, 0.25, 0.5, 1.0]
    """`plm transfer`: fractions of the labelled training split (nested subsets), when `transfer_labels` is empty."""
    transfer_labels: list[int] = []
    """`plm transfer`: labelled-example budgets as absolute counts (0 = the whole train split); replaces `transfer_fractions` when set."""
    transfer_seeds: int = Field(1, ge=1)
    """`plm transfer`: seeds per budget; seed i draws its own labelled subset and initialisation (`seed + i`), shared by every strategy and the baseline."""
    transfer_max_labels: dict[str, int] = {}
    """`plm transfer`: per-strategy cap on the budget (e.g. `{full: 250}`: a CPU BERT is fine-tuned and evaluated only up to 250 labels)."""
    baseline: bool = True
    """`plm transfer`: a supervised-only baseline on the same subsets, TF-IDF (word 1-2 grams, sublinear tf) + logistic regression (`init: baseline`)."""
    report: bool = False
    """Run the transfer report as part of `plm run` (after fine-tuning, before registration) and print it at the end."""

    @model_validator(mode="after")
    def _fractions_in_range(self) -> FinetuneSpec:
        if not self.transfer_fractions or any(not 0 < f <= 1 for f in self.transfer_fractions):
            raise ValueError("finetune.transfer_fractions must be in (0, 1]")
        if any(n < 0 for n in self.transfer_labels):
            raise ValueError("finetune.transfer_labels must be counts >= 0 (0 = the whole train split)")
        if (self.task_type == "qa") != (self.format == "squad"):
            raise ValueError("finetune.format: task_type qa reads SQuAD JSON (format squad), and only it does")
        if self.task_type == "pair_classification" and not self.text_pair_column:
            raise ValueError("finetune.text_pair_column must name the second text for pair_classification")
        if self.encoding != "auto":
            import codecs

            try:
                codecs.lookup(self.encoding)
            except LookupError:
                raise ValueError(f"finetune.encoding: unknown codec {self.encoding!r} (use `auto` or a Python codec name)") from None
        if self.head_init == "probe" and self.task_type not in ("classification", "pair_classification"):
            raise ValueError(f"finetune.head_init probe fits a classifier's head; task_type {self.task_type} has none (use new)")
        if self.head_init == "probe" and self.pair_orderings == "both":
            raise ValueError("finetune.head_init probe reads each text of a pair on its own ([u, v, |u - v|, u * v]): "
                             "pair_orderings both has nothing to reorder (use one)")  # fmt: skip
        if self.task_type == "qa" and self.max_query_len + 4 > self.seq_len:
            raise ValueError("finetune.max_query_len must leave room for context: max_query_len + 4 <= seq_len")
        return self


class TrackingSpec(_Section):
    uri: str | None = None
    """MLflow tracking URI; default `$MLFLOW_TRACKING_URI`, else SQLite under the home directory."""
    experiment: str | None = None
    """MLflow experiment name; default: the pipeline name."""
    register_models: bool = True
    """Register the pretrained encoder and the fine-tuned model in the MLflow registry."""
    gate_metric: str | None = run_only(None, pattern=r"^[A-Za-z0-9_.]+$")
    """The pretrain-stage metric that gates `@champion` for the pretrained model (`<pipeline>-<kind>`); None = its family's (BERT `val_mlm_accuracy`, GPT `val_perplexity`, word vectors `wordsim_spearman`). E.g. `wordform_mrr` for Korean fastText, which has no WordSim-353 pairs. `val_loss`/`val_perplexity` are lower-is-better, every other metric higher."""


class RunnerSpec(_Section):
    kind: Literal["local", "dask"] = run_only("local")
    """Where the data stages run their shards: `local` (this process, or an `objectives.workers` fork pool) or `dask` (a Dask cluster: `address`, else a LocalCluster of `workers` processes). Outputs are byte-identical either way."""
    workers: int = run_only(2, ge=1)
    """`kind: dask` without an address: worker processes of the LocalCluster started for the run (one thread each)."""
    address: str | None = run_only(None)
    """`kind: dask`: the scheduler of an existing cluster (`tcp://host:8786`); default `$PLM_DASK_ADDRESS`, else a LocalCluster. Workers must see the home directory at the same path."""

    @model_validator(mode="after")
    def _address_needs_dask(self) -> RunnerSpec:
        if self.address and self.kind != "dask":
            raise ValueError("runner.address is the scheduler of a Dask cluster: set runner.kind=dask")
        return self

    def resolved_address(self) -> str | None:
        """`address`, else `$PLM_DASK_ADDRESS` (None: start a LocalCluster)."""
        return self.address or os.environ.get("PLM_DASK_ADDRESS") or None


class ScheduleSpec(_Section):
    cron: str | None = None
    """Cron expression for a scheduled deployment (none: run on demand)."""
    timezone: str = "UTC"
    """Time zone of the cron expression."""


class PipelineSpec(_Section):
    name: str = Field("quickstart", pattern=r"^[a-z0-9][a-z0-9_-]*$")
    """Pipeline name: prefixes registered models and names the MLflow experiment."""
    home: str | None = None
    """Home directory for lake, catalog, artifacts and stores; default `$PLM_HOME`, else `./.plm`."""
    corpus: CorpusSpec = CorpusSpec()
    """Stage 1: what to ingest and how."""
    tokenizer: TokenizerSpec = TokenizerSpec()
    """Stage 2: the tokenizer to train."""
    objectives: ObjectivesSpec = ObjectivesSpec()
    """Stage 3: self-supervised example generation."""
    model: ModelSpec = BertSpec()
    """Stage 4: the model architecture (`model.arch` selects the family)."""
    word_vectors: Word2VecSpec | None = None
    """Stage 4b: word2vec vectors pretrained beside a BERT or GPT `model` on the same corpus and skip-gram examples (the word-vector strategies `features` / `embeddings`, in the same transfer report); None trains none."""
    train: TrainSpec = TrainSpec()
    """Stage 4: the pretraining run."""
    finetune: FinetuneSpec = FinetuneSpec()
    """Stage 5: the labelled task."""
    tracking: TrackingSpec = TrackingSpec()
    """MLflow tracking and registry."""
    schedule: ScheduleSpec = ScheduleSpec()
    """When a deployment runs."""
    runner: RunnerSpec = RunnerSpec()
    """Where shard work runs (never part of a fingerprint)."""

    @model_validator(mode="before")
    @classmethod
    def _default_arch(cls, data: Any) -> Any:
        """`model.arch` may be left out (BERT), as every other field; the union needs it to pick a class."""
        if isinstance(data, dict) and isinstance(data.get("model"), dict) and "arch" not in data["model"]:
            data = {**data, "model": {"arch": "bert", **data["model"]}}
        return data

    @model_validator(mode="after")
    def _word_vectors(self) -> "PipelineSpec":
        wv = self.word_vectors
        if wv is not None and self.model.arch not in ("bert", "gpt"):
            raise ValueError("word_vectors: companion word vectors go with model.arch=bert or gpt (a word-vector model "
                             "is its own `model`)")  # fmt: skip
        if self.finetune.head_init == "probe" and self.model.arch != "gpt":
            raise ValueError(f"finetune.head_init probe applies to a GPT decoder's fine-tuning; model.arch is "
                             f"{self.model.arch} (BERT and word vectors: use new, or strategy features)")  # fmt: skip
        trained = wv or (self.model if isinstance(self.model, Word2VecSpec) else None)
        if wv is not None and "skipgram" not in self.objectives.kinds:
            raise ValueError("word_vectors: objectives.kinds must include skipgram (the vocabulary and held-out pairs)")
        sg = self.objectives.skipgram
        if sg.contexts and (trained is None or trained.engine != "compiled"):
            raise ValueError("objectives.skipgram.contexts > 0 is drawn by the compiled engine only: set model.engine "
                             "(or word_vectors.engine) to compiled")
        if sg.contexts and sg.cbow:
            raise ValueError("objectives.skipgram.contexts > 0 samples skip-gram contexts: CBOW averages the whole window "
                             "(set contexts=0 or cbow=false)")
        if not sg.train_shards and trained is not None and trained.engine != "compiled":
            raise ValueError("objectives.skipgram.train_shards=false leaves the torch engine nothing to replay: "
                             "set engine=compiled")
        return self

    @model_validator(mode="after")
    def _share_roots(self) -> "PipelineSpec":
        """`finetune.data` is checked against the same roots as the corpus."""
        self.finetune._data_roots = list(self.corpus.allowed_roots)
        return self

    def home_dir(self) -> Path:
        """The resolved home directory (spec > $PLM_HOME > ./.plm), absolute."""
        return Path(self.home or os.environ.get("PLM_HOME") or ".plm").expanduser().resolve()


def _dotted(loc: tuple[Any, ...]) -> str:
    if loc[:1] == ("model",) and len(loc) > 1 and loc[1] in ("bert", "gpt", *WORD_VECTOR_ARCHS):
        loc = loc[:1] + loc[2:]  # pydantic puts the union's tag into the location; users never write it
    return ".".join(str(part) for part in loc)


def _format_errors(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = _dotted(e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(msg if msg.startswith(key) and key else f"{key or 'spec'}: {msg}")
    return "; ".join(lines)


def _union_members(annotation: Any) -> tuple[Any, ...]:
    """The classes of a (possibly Annotated) union annotation, or the annotation alone."""
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, types.UnionType):
        return get_args(annotation)
    return (annotation,)


def _check_key(path: list[str]) -> None:
    model: type[BaseModel] = PipelineSpec
    for i, part in enumerate(path):
        fields = model.model_fields
        if part not in fields:
            raise SpecError(f"unknown key '{'.'.join(path[: i + 1])}'")
        annotation = fields[part].annotation
        members = [a for a in _union_members(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        if len(members) > 1 and i < len(path) - 1:  # a discriminated union: the key must exist in some member
            name = path[i + 1]
            model = next((m for m in members if name in m.model_fields), members[0])
        elif members:
            model = members[0]
        elif i < len(path) - 1:
            raise SpecError(f"'{'.'.join(path[: i + 1])}' has no sub-keys")


def apply_override(data: dict[str, Any], override: str) -> None:
    """Apply one `dotted.key=value` override in place; the value is parsed as YAML."""
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise SpecError(f"override '{override}' is not of the form key=value")
    path = key.strip().split(".")
    _check_key(path)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise SpecError(f"{key}: value {raw!r} is not valid YAML ({exc.__class__.__name__})") from None
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SpecError(f"{key}: cannot set a sub-key of a non-mapping")
    node[path[-1]] = value


def load_spec(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> PipelineSpec:
    """Read a YAML spec (or only defaults when `path` is None), apply overrides, validate."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise SpecError(f"spec file not found: {p}")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise SpecError(f"{p}: not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise SpecError(f"{p}: the top level must be a mapping")
        data = loaded or {}
    for override in overrides:
        apply_override(data, override)
    try:
        spec = PipelineSpec.model_validate(data)
        if isinstance(spec.model, _TransformerSpec):
            spec.model.dims()
    except ValidationError as err:
        raise SpecError(_format_errors(err)) from None
    return spec


def field_docs(model: type[BaseModel] = PipelineSpec, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, docstring) for every field: the reference the README shows."""
    rows: list[tuple[str, str, str]] = []
    for name, info in model.model_fields.items():
        key = f"{prefix}{name}"
        sections = [a for a in _union_members(info.annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not sections:
            rows.append((key, repr(info.default), info.description or ""))
            continue
        seen = {r[0] for r in rows}
        for section in sections:  # union members (model.arch): each key once, from the first family that has it
            rows.extend(r for r in field_docs(section, key + ".") if r[0] not in seen and not seen.add(r[0]))
    return rows
