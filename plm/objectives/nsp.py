"""Sentence-pair instances: BERT's next-sentence prediction and ALBERT's sentence-order prediction.

NSP follows BERT's `create_instances_from_document`: per document, draw a target length (shorter
with `short_seq_prob`), accumulate sentences up to it, split the chunk at a random point into A
and B; with probability `random_fraction` B is instead a span from another document and the
unused sentences are put back. SOP keeps B the true continuation and swaps A and B with
probability `random_fraction` (label 1 = swapped). Pairs are truncated from the longer side to
fit `[CLS] A [SEP] B [SEP]`.

The algorithm only needs sentence lengths: `plan_document` runs it on lengths and returns token
ranges, and the caller gathers all tokens at once (plm.objectives.shards). Scalar draws use a
`random.Random` seeded from the shard's numpy generator: numpy's per-call overhead would dominate.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np


@dataclass
class PairPlan:
    """Instances as token ranges: A = doc a_doc tokens [a_lo, a_hi), B likewise (document-local offsets)."""

    a_doc: list[int] = field(default_factory=list)
    a_lo: list[int] = field(default_factory=list)
    a_hi: list[int] = field(default_factory=list)
    b_doc: list[int] = field(default_factory=list)
    b_lo: list[int] = field(default_factory=list)
    b_hi: list[int] = field(default_factory=list)
    label: list[int] = field(default_factory=list)  # NSP: B from another document; SOP: A and B swapped
    forced: list[int] = field(default_factory=list)  # NSP: one-sentence chunk, so B had to be random

    def __len__(self) -> int:
        return len(self.label)

    def add(self, a: tuple[int, int, int], b: tuple[int, int, int], label: bool, forced: bool) -> None:
        self.a_doc.append(a[0])
        self.a_lo.append(a[1])
        self.a_hi.append(a[2])
        self.b_doc.append(b[0])
        self.b_lo.append(b[1])
        self.b_hi.append(b[2])
        self.label.append(int(label))
        self.forced.append(int(forced))


def _randint(coin: random.Random, lo: int, hi: int) -> int:
    """Uniform integer in [lo, hi] (`random.randint` without its argument checking, ~20x cheaper)."""
    return lo + int(coin.random() * (hi - lo + 1))


def _binomial_half(coin: random.Random, n: int) -> int:
    """Binomial(n, 1/2): the number of set bits in n random bits."""
    return coin.getrandbits(n).bit_count() if n else 0


def truncation(la: int, lb: int, max_tokens: int, coin: random.Random) -> tuple[int, int, int, int]:
    """(front_a, back_a, front_b, back_b) tokens to drop, distributed as BERT's `truncate_seq_pair`.

    BERT removes one token at a time from the longer side (B on ties), each from the front or back
    with probability 1/2. Which side loses how many tokens depends only on the lengths, and the
    front/back choices are independent fair coins, so each side's front count is Binomial(removed, 1/2).
    """
    excess = la + lb - max_tokens
    if excess <= 0:
        return 0, 0, 0, 0
    first = min(excess, abs(la - lb))  # trim the longer side down to the shorter ...
    rest = excess - first  # ... then alternate, B first on the tie
    ra = (first if la > lb else 0) + rest // 2
    rb = (first if lb >= la else 0) + rest - rest // 2
    fa, fb = _binomial_half(coin, ra), _binomial_half(coin, rb)
    return fa, ra - fa, fb, rb - fb


def truncate_seq_pair(a: list[int], b: list[int], max_tokens: int, rng: np.random.Generator) -> None:
    """BERT's truncation applied to two token lists in place (same distribution as `truncation`)."""
    fa, ba, fb, bb = truncation(len(a), len(b), max_tokens, random.Random(int(rng.integers(2**63))))
    del a[:fa], a[len(a) - ba :], b[:fb], b[len(b) - bb :]


def plan_document(
    bounds: list[list[int]],
    doc_index: int,
    seq_len: int,
    short_seq_prob: float,
    random_fraction: float,
    coin: random.Random,
    plan: PairPlan,
    order_prediction: bool = False,
) -> None:
    """Append the instances of document `doc_index` to `plan`.

    `bounds[d]` are the cumulative token counts of document d's sentences (`[0, n0, n0+n1, ...]`).
    """
    if order_prediction:
        _plan_document_stepwise(bounds, doc_index, seq_len, short_seq_prob, random_fraction, coin, plan, True)
    else:
        _plan_nsp_document(bounds, doc_index, seq_len, short_seq_prob, random_fraction, coin, plan)


def _plan_document_stepwise(
    bounds: list[list[int]], doc_index: int, seq_len: int, short_seq_prob: float, random_fraction: float,
    coin: random.Random, plan: PairPlan, order_prediction: bool,
) -> None:  # fmt: skip
    """`plan_document` one instance at a time through `_plan_sop` / `_plan_nsp` (SOP; NSP's reference)."""
    own = bounds[doc_index]
    n_sent = len(own) - 1
    max_num_tokens = seq_len - 3
    target = _randint(coin, 2, max_num_tokens) if coin.random() < short_seq_prob else max_num_tokens
    first = 0  # first sentence of the current chunk
    i = 0
    while i < n_sent:
        length = own[i + 1] - own[first]
        if i == n_sent - 1 or length >= target:
            n_chunk = i - first + 1
            if order_prediction:
                _plan_sop(own, doc_index, first, n_chunk, max_num_tokens, random_fraction, coin, plan)
            else:
                i = _plan_nsp(bounds, doc_index, first, n_chunk, target, max_num_tokens, random_fraction, coin, plan)
            first = i + 1
        i += 1


def _plan_nsp_document(
    bounds: list[list[int]], doc_index: int, seq_len: int, short_seq_prob: float, random_fraction: float,
    coin: random.Random, plan: PairPlan,
) -> None:  # fmt: skip
    """`plan_document` for NSP in one loop: `_plan_nsp`, `truncation` and `_add_truncated` inlined, the same coin
    draws in the same order (the per-instance function calls were most of the planner's time)."""
    rand, bits = coin.random, coin.getrandbits
    a_docs, a_los, a_his, b_docs, b_los, b_his = plan.a_doc, plan.a_lo, plan.a_hi, plan.b_doc, plan.b_lo, plan.b_hi
    labels, forceds = plan.label, plan.forced
    own = bounds[doc_index]
    n_sent, n_docs = len(own) - 1, len(bounds)
    max_num = seq_len - 3
    target = 2 + int(rand() * (max_num - 1)) if rand() < short_seq_prob else max_num
    first = i = 0
    while i < n_sent:
        if i == n_sent - 1 or own[i + 1] - own[first] >= target:
            n_chunk = i - first + 1
            a_end = 1 + int(rand() * (n_chunk - 1)) if n_chunk >= 2 else 1
            a_lo, a_hi = own[first], own[first + a_end]
            forced = n_chunk == 1
            if forced or rand() < random_fraction:
                target_b = target - (a_hi - a_lo)
                b_doc = doc_index
                for _ in range(10):
                    b_doc = int(rand() * n_docs)
                    if b_doc != doc_index:
                        break
                other = bounds[b_doc]
                n_other = len(other) - 1
                start = end = int(rand() * n_other)
                while end < n_other:  # whole sentences until B reaches its target length
                    end += 1
                    if other[end] - other[start] >= target_b:
                        break
                b_lo, b_hi, label, i = other[start], other[end], 1, first + a_end - 1  # unused sentences put back
            else:
                b_doc, b_lo, b_hi, label, i = doc_index, a_hi, own[first + n_chunk], 0, first + n_chunk - 1
            la, lb = a_hi - a_lo, b_hi - b_lo
            excess = la + lb - max_num
            if excess > 0:  # `truncation`
                cut = min(excess, abs(la - lb))
                rest = excess - cut
                ra = (cut if la > lb else 0) + rest // 2
                rb = (cut if lb >= la else 0) + rest - rest // 2
                fa = bits(ra).bit_count() if ra else 0
                fb = bits(rb).bit_count() if rb else 0
                a_lo, a_hi, b_lo, b_hi = a_lo + fa, a_hi - (ra - fa), b_lo + fb, b_hi - (rb - fb)
            if a_hi > a_lo and b_hi > b_lo:
                a_docs.append(doc_index)
                a_los.append(a_lo)
                a_his.append(a_hi)
                b_docs.append(b_doc)
                b_los.append(b_lo)
                b_his.append(b_hi)
                labels.append(label)
                forceds.append(int(forced))
            first = i + 1
        i += 1


def _plan_nsp(
    bounds: list[list[int]], doc_index: int, first: int, n_chunk: int, target: int, max_num_tokens: int,
    random_fraction: float, coin: random.Random, plan: PairPlan,
) -> int:  # fmt: skip
    """One NSP instance from the chunk of `n_chunk` sentences at `first`; returns the chunk's last used sentence."""
    own = bounds[doc_index]
    a_end = _randint(coin, 1, n_chunk - 1) if n_chunk >= 2 else 1
    a_lo, a_hi = own[first], own[first + a_end]
    forced = n_chunk == 1
    if forced or coin.random() < random_fraction:
        target_b = target - (a_hi - a_lo)
        b_doc = doc_index
        for _ in range(10):
            b_doc = _randint(coin, 0, len(bounds) - 1)
            if b_doc != doc_index:
                break
        other = bounds[b_doc]
        start = _randint(coin, 0, len(other) - 2)
        end = start
        while end < len(other) - 1:  # whole sentences until B reaches its target length
            end += 1
            if other[end] - other[start] >= target_b:
                break
        b = (b_doc, other[start], other[end])
        label, last = True, first + a_end - 1  # the unused sentences are put back
    else:
        b = (doc_index, a_hi, own[first + n_chunk])
        label, last = False, first + n_chunk - 1
    _add_truncated(plan, (doc_index, a_lo, a_hi), b, label, forced, max_num_tokens, coin)
    return last


def _plan_sop(
    own: list[int], doc_index: int, first: int, n_chunk: int, max_num_tokens: int,
    swap_fraction: float, coin: random.Random, plan: PairPlan,
) -> None:  # fmt: skip
    """Consecutive A and B, swapped with probability `swap_fraction`; a one-sentence chunk is cut inside."""
    if n_chunk >= 2:
        cut = own[first + _randint(coin, 1, n_chunk - 1)]
    else:
        if own[first + 1] - own[first] < 2:
            return
        cut = _randint(coin, own[first] + 1, own[first + 1] - 1)
    a, b = (doc_index, own[first], cut), (doc_index, cut, own[first + n_chunk])
    swapped = coin.random() < swap_fraction
    _add_truncated(plan, *((b, a) if swapped else (a, b)), swapped, False, max_num_tokens, coin)


def _add_truncated(
    plan: PairPlan, a: tuple[int, int, int], b: tuple[int, int, int], label: bool, forced: bool,
    max_num_tokens: int, coin: random.Random,
) -> None:  # fmt: skip
    fa, ba, fb, bb = truncation(a[2] - a[1], b[2] - b[1], max_num_tokens, coin)
    a = (a[0], a[1] + fa, a[2] - ba)
    b = (b[0], b[1] + fb, b[2] - bb)
    if a[2] > a[1] and b[2] > b[1]:
        plan.add(a, b, label, forced)


@dataclass
class PairInstance:
    tokens_a: list[int]
    tokens_b: list[int]
    is_random_next: bool  # NSP: B from another document; SOP: A and B swapped
    forced_random: bool  # NSP: the chunk had one sentence, so B had to come from another document
    a_doc: int
    b_doc: int


def create_pairs(
    documents: list[list[np.ndarray]],
    doc_index: int,
    seq_len: int,
    short_seq_prob: float,
    random_fraction: float,
    rng: np.random.Generator,
    order_prediction: bool = False,
) -> list[PairInstance]:
    """All instances of one document as token lists (the planner plus a per-instance gather)."""
    bounds = [np.concatenate([[0], np.cumsum([len(s) for s in d])]).tolist() for d in documents]
    plan = PairPlan()
    coin = random.Random(int(rng.integers(2**63)))
    plan_document(bounds, doc_index, seq_len, short_seq_prob, random_fraction, coin, plan, order_prediction)
    flat = [np.concatenate(d).tolist() if d else [] for d in documents]
    return [
        PairInstance(
            flat[plan.a_doc[k]][plan.a_lo[k] : plan.a_hi[k]], flat[plan.b_doc[k]][plan.b_lo[k] : plan.b_hi[k]],
            bool(plan.label[k]), bool(plan.forced[k]), plan.a_doc[k], plan.b_doc[k],
        )  # fmt: skip
        for k in range(len(plan))
    ]
