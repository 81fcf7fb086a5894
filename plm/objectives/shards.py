"""BERT pretraining examples (MLM + NSP or SOP) as Parquet shards, generated shard by shard.

Documents are cut into generation shards of `docs_per_shard`; shard s of copy c is generated from
its own RNG, seeded by (seed, split, objective, s, c), and written atomically as
`part-<c>-<s>.parquet` with its statistics in the file's metadata. So the output is byte-identical
for any number of workers, and a killed run resumes by skipping the shards already written.

Shard schema: input_ids list<int32>, token_type_ids list<int8>, labels list<int32> (-100 where
not predicted), nsp_label int8 (NSP: 0 = IsNext, 1 = random; SOP: 0 = in order, 1 = swapped),
a_doc_id, b_doc_id. Sequences are unpadded.

Pairs are planned on sentence lengths (plm.objectives.nsp) and all rows of a shard are gathered
from one flat token array with numpy. Whole-word masking packs a word-start flag into each token
value (`id * 2 + start`), so the flag travels with its token.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from plm.config import ObjectivesSpec
from plm.objectives.mlm import IGNORE, MaskedBatch, mask_tokens
from plm.objectives.nsp import PairPlan, plan_document
from plm.objectives.shardio import read_stats, stats_meta, write_shard
from plm.objectives.shardrun import run_shards
from plm.tokenizer.encode import EncodedDoc
from plm.tokenizer.specials import SpecialIds
from plm.tracker import Progress, no_progress

SCHEMA = pa.schema(
    [
        ("input_ids", pa.list_(pa.int32())),
        ("token_type_ids", pa.list_(pa.int8())),
        ("labels", pa.list_(pa.int32())),
        ("nsp_label", pa.int8()),
        ("a_doc_id", pa.string()),
        ("b_doc_id", pa.string()),
    ]
)
SPLIT_CODES = {"train": 0, "validation": 1, "test": 2}
OBJECTIVE_CODES = {"mlm": 1, "nsp": 2, "sop": 3}  # clm and skipgram streams use 11 and 7 (their modules)
STATS_KEY = b"plm.stats"


@dataclass
class ExampleStats:
    examples: int = 0
    tokens: int = 0
    candidates: int = 0
    selected: int = 0
    masked: int = 0
    random: int = 0
    kept: int = 0
    nsp_random: int = 0
    nsp_forced: int = 0
    shards_written: int = 0
    shards_reused: int = 0
    length_counts: list[int] = field(default_factory=list)
    """Histogram of sequence lengths: length_counts[n] = examples of n tokens."""

    def add(self, other: ExampleStats) -> None:
        for f in fields(self):
            if f.name != "length_counts":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        width = max(len(self.length_counts), len(other.length_counts))
        self.length_counts = (
            np.pad(np.asarray(self.length_counts, dtype=np.int64), (0, width - len(self.length_counts)))
            + np.pad(np.asarray(other.length_counts, dtype=np.int64), (0, width - len(other.length_counts)))
        ).tolist()

    @property
    def lengths(self) -> np.ndarray:
        """Every example's length (expanded from the histogram), e.g. for a plot."""
        return np.repeat(np.arange(len(self.length_counts)), self.length_counts)

    def summary(self) -> dict[str, float]:
        sel = max(self.selected, 1)
        coin = self.examples - self.nsp_forced
        return {
            "examples": float(self.examples),
            "tokens": float(self.tokens),
            "mask_rate": self.selected / max(self.candidates, 1),
            "mask_token_share": self.masked / sel,
            "random_token_share": self.random / sel,
            "unchanged_share": self.kept / sel,
            "nsp_random_rate": self.nsp_random / max(self.examples, 1),
            "nsp_random_rate_unforced": (self.nsp_random - self.nsp_forced) / max(coin, 1),
            "nsp_forced_random": float(self.nsp_forced),
            "mean_length": float(self.tokens / self.examples) if self.examples else 0.0,
            "candidates": float(self.candidates),
            "selected": float(self.selected),
            "shards_written": float(self.shards_written),
            "shards_reused": float(self.shards_reused),
        }


def check_statistics(stats: dict[str, float], cfg: ObjectivesSpec) -> list[str]:
    """Realised statistics outside their allowed band, as messages (empty = pass).

    The band is max(`cfg.tolerance`, 4 standard errors of the proportion over the trials behind it),
    so a small split cannot fail by sampling noise alone while a systematic error still does.

    The NSP coin is checked on the pairs where it was tossed: BERT forces a random B when a chunk
    holds a single sentence, and those are reported separately (`nsp_forced_random`). Whole-word
    selection in `exact` mode undershoots k when no remaining word fits, so there the mask rate
    may fall short of p by up to twice the tolerance.
    """
    keep = 1 - cfg.mask_fraction - cfg.random_fraction
    targets = {
        "mask_rate": cfg.mlm_probability,
        "mask_token_share": cfg.mask_fraction,
        "random_token_share": cfg.random_fraction,
        "unchanged_share": keep,
        "nsp_random_rate_unforced": cfg.nsp_random_fraction,
    }
    if cfg.masking == "dynamic":  # masks are drawn by the loader, not written here
        targets = {"nsp_random_rate_unforced": cfg.nsp_random_fraction}
    trials = {
        "mask_rate": stats["candidates"],
        "mask_token_share": stats["selected"],
        "random_token_share": stats["selected"],
        "unchanged_share": stats["selected"],
        "nsp_random_rate_unforced": stats["examples"] - stats["nsp_forced_random"],
    }
    failures = []
    for key, target in targets.items():
        band = max(cfg.tolerance, 4 * float(np.sqrt(target * (1 - target) / max(trials[key], 1))))
        deviation = stats[key] - target
        undershoot_ok = key == "mask_rate" and cfg.whole_word != "none" and cfg.mlm_mode == "exact"
        if undershoot_ok and -2 * band <= deviation < 0:
            deviation = 0.0
        if abs(deviation) > band:
            failures.append(f"{key} = {stats[key]:.4f}, target {target:.4f} +- {band:.4f}")
    return failures


def pair_objective(kinds: Sequence[str]) -> str:
    """`nsp` or `sop`: the sentence-pair task that goes with MLM."""
    return "sop" if "sop" in kinds else "nsp"


# ---- word groups --------------------------------------------------------------------------------


def word_start_flags(doc: EncodedDoc, mode: str) -> list[np.ndarray]:
    """Per sentence, 1 where a token starts a masking group (a word, or a Korean morpheme)."""
    if doc.word_ids is None:
        raise ValueError("whole-word masking needs documents encoded with word ids")
    flags = []
    for i, words in enumerate(doc.word_ids):
        start = np.ones(len(words), dtype=np.int32)
        start[1:] = words[1:] != words[:-1]
        if mode == "morpheme" and doc.lang == "ko" and doc.starts is not None and doc.texts is not None:
            start |= np.isin(doc.starts[i], _morpheme_starts(doc.texts[i])).astype(np.int32)
        flags.append(start)
    return flags


def _morpheme_starts(text: str) -> np.ndarray:
    from plm.corpus.sentences import _kiwi

    return np.asarray([t.start for t in _kiwi().tokenize(text)], dtype=np.int64)


def _flat_documents(docs: list[EncodedDoc], whole_word: str) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """All tokens in one int64 array (with packed word-start flags when grouping), document starts, sentence bounds."""
    sentences = [s for d in docs for s in d.sentences]
    flat = np.concatenate(sentences).astype(np.int64) if sentences else np.zeros(0, dtype=np.int64)
    if whole_word != "none" and sentences:
        flat = flat * 2 + np.concatenate([f for d in docs for f in word_start_flags(d, whole_word)])
    bounds = []
    for d in docs:
        running, b = 0, [0]
        for s in d.sentences:
            running += len(s)
            b.append(running)
        bounds.append(b)
    doc_start = np.concatenate([[0], np.cumsum([b[-1] for b in bounds])])[:-1].astype(np.int64)
    return flat, doc_start, bounds


# ---- one shard ---------------------------------------------------------------------------------


def _list_array(matrix: np.ndarray, valid: np.ndarray, offsets: pa.Array, dtype: pa.DataType) -> pa.ListArray:
    """Rows of a padded (N, T) matrix cut at their lengths: the valid cells in row-major order."""
    return pa.ListArray.from_arrays(offsets, pa.array(matrix[valid], type=dtype))


def _mask_and_table(
    plan: PairPlan,
    order: np.ndarray,
    flat: np.ndarray,
    doc_start: np.ndarray,
    doc_ids: list[str],
    cfg: ObjectivesSpec,
    vocab_size: int,
    specials: SpecialIds,
    rng: np.random.Generator,
) -> tuple[pa.Table, ExampleStats]:
    """Gather every `[CLS] A [SEP] B [SEP]` row of the plan at once, mask, and build the Arrow table."""
    n, t = len(order), cfg.seq_len
    grouped = cfg.whole_word != "none"
    a_doc, b_doc = np.asarray(plan.a_doc)[order], np.asarray(plan.b_doc)[order]
    a_lo, a_hi = np.asarray(plan.a_lo)[order], np.asarray(plan.a_hi)[order]
    b_lo, b_hi = np.asarray(plan.b_lo)[order], np.asarray(plan.b_hi)[order]
    la, lb = (a_hi - a_lo)[:, None], (b_hi - b_lo)[:, None]
    lengths = (la + lb + 3)[:, 0]
    pos = np.arange(t)[None, :]
    in_a = (pos >= 1) & (pos <= la)
    in_b = (pos >= la + 2) & (pos < la + 2 + lb)
    src = np.where(in_a, (doc_start[a_doc] + a_lo)[:, None] + pos - 1, (doc_start[b_doc] + b_lo)[:, None] + pos - la - 2)
    padding = pos >= lengths[:, None]
    packed = np.zeros((n, t), dtype=np.int64)
    body = in_a | in_b
    packed[body] = flat[src[body]]
    rows = np.arange(n)
    cls, sep = (specials.cls * 2 + 1, specials.sep * 2 + 1) if grouped else (specials.cls, specials.sep)
    packed[:, 0] = cls
    packed[rows, la[:, 0] + 1] = sep
    packed[rows, lengths - 1] = sep
    types = in_b.astype(np.int8)
    types[rows, lengths - 1] = 1
    if grouped:
        ids = (packed >> 1).astype(np.int32)
        starts = (packed & 1).astype(bool) | (pos <= 1) | (pos == la + 2)  # a truncated segment may start mid-word
        groups = np.cumsum(starts | ~body, axis=1)
    else:
        ids, groups = packed.astype(np.int32), None
    ids[padding] = specials.pad
    special = ~body
    if cfg.masking == "dynamic":  # clean ids; the training loader masks each batch (DynamicMasker)
        masked = MaskedBatch(ids, np.full_like(ids, IGNORE), int(body.sum()), 0, 0, 0, 0)
    else:
        masked = mask_tokens(
            ids, special | np.isin(ids, list(specials.all)), rng,
            vocab_size=vocab_size, n_special=specials.n_leading, mask_id=specials.mask,
            probability=cfg.mlm_probability, max_predictions=cfg.max_predictions,
            mask_fraction=cfg.mask_fraction, random_fraction=cfg.random_fraction,
            mode=cfg.mlm_mode, groups=groups,
        )  # fmt: skip
    valid = ~padding
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    labels = np.asarray(plan.label, dtype=np.int8)[order]
    forced = np.asarray(plan.forced, dtype=bool)[order]
    ids_array = np.asarray(doc_ids, dtype=object)
    table = pa.Table.from_arrays(
        [
            _list_array(masked.input_ids, valid, offsets, pa.int32()),
            _list_array(types, valid, offsets, pa.int8()),
            _list_array(masked.labels, valid, offsets, pa.int32()),
            pa.array(labels, pa.int8()),
            pa.array(ids_array[a_doc], pa.string()),
            pa.array(ids_array[b_doc], pa.string()),
        ],
        schema=SCHEMA,
    )
    stats = ExampleStats(
        examples=n, tokens=int(lengths.sum()), candidates=masked.n_candidates, selected=masked.n_selected,
        masked=masked.n_masked, random=masked.n_random, kept=masked.n_kept,
        nsp_random=int(labels.sum()), nsp_forced=int(forced.sum()), length_counts=np.bincount(lengths).tolist(),
    )  # fmt: skip
    return table, stats


@dataclass(frozen=True)
class _Job:
    split: str
    copy: int
    shard: int
    path: Path


def _generate(job: _Job, work: dict[str, Any]) -> ExampleStats:
    """One shard of one copy: its pairs planned, masked and written (`work`: what every shard reads)."""
    bounds: list[list[int]] = work["bounds"]
    cfg: ObjectivesSpec = work["cfg"]
    objective = pair_objective(cfg.kinds)
    rng = np.random.default_rng([cfg.seed, SPLIT_CODES[job.split], OBJECTIVE_CODES[objective], job.shard, job.copy])
    coin = random.Random(int(rng.integers(2**63)))
    lo = job.shard * cfg.docs_per_shard
    plan = PairPlan()
    for i in range(lo, min(lo + cfg.docs_per_shard, len(bounds))):
        plan_document(bounds, i, cfg.seq_len, cfg.short_seq_prob, cfg.nsp_random_fraction, coin, plan,
                      order_prediction=objective == "sop")  # fmt: skip
    table, stats = _mask_and_table(
        plan, rng.permutation(len(plan)), work["flat"], work["doc_start"], work["doc_ids"],
        cfg, work["vocab_size"], work["specials"], rng,
    )
    stats.shards_written = 1
    # Dictionary-encoding token-id lists is wasted work; only the document ids repeat.
    write_shard(table, job.path, stats_meta(STATS_KEY, asdict(stats)), use_dictionary=["a_doc_id", "b_doc_id"])
    return stats


def _stats_of(path: Path) -> ExampleStats:
    stats = ExampleStats(**read_stats(path, STATS_KEY))
    stats.shards_written, stats.shards_reused = 0, 1
    return stats


def write_bert_examples(
    docs: list[EncodedDoc],
    split: str,
    cfg: ObjectivesSpec,
    vocab_size: int,
    specials: SpecialIds,
    out_dir: Path,
    progress: Progress = no_progress,
) -> ExampleStats:
    """Generate `cfg.dupe_factor` copies of MLM + NSP/SOP examples for one split into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    n_shards = -(-len(docs) // cfg.docs_per_shard)
    jobs = [
        _Job(split, copy, shard, out_dir / f"part-{copy:03d}-{shard:05d}.parquet")
        for copy in range(cfg.dupe_factor)
        for shard in range(n_shards)
    ]
    total = ExampleStats()
    todo = []
    for job in jobs:
        if job.path.exists():
            total.add(_stats_of(job.path))
        else:
            todo.append(job)
    flat, doc_start, bounds = _flat_documents(docs, cfg.whole_word)
    work = dict(flat=flat, doc_start=doc_start, bounds=bounds, doc_ids=[d.doc_id for d in docs], cfg=cfg,
                vocab_size=vocab_size, specials=specials)  # fmt: skip
    for stats in run_shards(_generate, todo, work, cfg.workers, grouped=True, share=out_dir):
        total.add(stats)
        progress(f"examples {split}", total.examples, None)
    return total
