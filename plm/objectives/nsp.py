"""Sentence-pair instances: BERT's next-sentence prediction and ALBERT's sentence-order prediction.

NSP follows BERT's `create_instances_from_document`: per document, draw a target length (shorter
with `short_seq_prob`), accumulate sentences up to it, split the chunk at a random point into A
and B; with probability `random_fraction` B is instead a span from another document and the
unused sentences are put back. SOP keeps B the true continuation and swaps A and B with
probability `random_fraction` (label 1 = swapped). Pairs are truncated from the longer side
(front or back at random) to fit `[CLS] A [SEP] B [SEP]`.

Token arrays may carry a packed whole-word flag (see plm.objectives.shards); nothing here looks
inside the values, so the flag travels with its token through concatenation and truncation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PairInstance:
    tokens_a: list[int]
    tokens_b: list[int]
    is_random_next: bool  # NSP: B from another document; SOP: A and B swapped
    forced_random: bool  # NSP: the chunk had one sentence, so B had to come from another document
    a_doc: int
    b_doc: int


def truncate_seq_pair(a: list[int], b: list[int], max_tokens: int, rng: np.random.Generator) -> None:
    """BERT's truncation in O(1) draws (in place).

    BERT removes one token at a time from the longer side (B on ties), each from the front or back
    with probability 1/2. Which side loses how many tokens depends only on the lengths, and the
    front/back choices are independent coins, so each side's front count is Binomial(removed, 1/2):
    the same distribution without a per-token loop.
    """
    la, lb = len(a), len(b)
    excess = la + lb - max_tokens
    if excess <= 0:
        return
    # Trim the longer side down to the shorter, then alternate (B first on ties, as BERT does).
    gap = abs(la - lb)
    first = min(excess, gap)
    rest = excess - first
    ra = (first if la > lb else 0) + rest // 2
    rb = (first if lb >= la else 0) + rest - rest // 2
    for seq, removed in ((a, ra), (b, rb)):
        if removed:
            front = int(rng.binomial(removed, 0.5))
            del seq[:front]
            del seq[len(seq) - (removed - front) :]


def _concat(segments: list[np.ndarray]) -> list[int]:
    return np.concatenate(segments).tolist() if segments else []


def create_pairs(
    documents: list[list[np.ndarray]],
    doc_index: int,
    seq_len: int,
    short_seq_prob: float,
    random_fraction: float,
    rng: np.random.Generator,
    order_prediction: bool = False,
) -> list[PairInstance]:
    """All NSP (or, with `order_prediction`, SOP) instances of one document (`documents[doc_index]`)."""
    document = documents[doc_index]
    max_num_tokens = seq_len - 3
    target = max_num_tokens
    if rng.random() < short_seq_prob:
        target = int(rng.integers(2, max_num_tokens + 1))
    out: list[PairInstance] = []
    chunk: list[np.ndarray] = []
    length = 0
    i = 0
    while i < len(document):
        chunk.append(document[i])
        length += len(document[i])
        if order_prediction and (i == len(document) - 1 or length >= target):
            pair = _sop_pair(chunk, doc_index, max_num_tokens, random_fraction, rng)
            if pair is not None:
                out.append(pair)
            chunk, length = [], 0
        elif i == len(document) - 1 or length >= target:
            a_end = int(rng.integers(1, len(chunk))) if len(chunk) >= 2 else 1
            tokens_a = _concat(chunk[:a_end])
            forced = len(chunk) == 1
            b_doc = doc_index
            if forced or rng.random() < random_fraction:
                is_random = True
                target_b = target - len(tokens_a)
                for _ in range(10):
                    b_doc = int(rng.integers(0, len(documents)))
                    if b_doc != doc_index:
                        break
                other = documents[b_doc]
                tokens_b: list[int] = []
                for j in range(int(rng.integers(0, len(other))), len(other)):
                    tokens_b.extend(other[j].tolist())
                    if len(tokens_b) >= target_b:
                        break
                i -= len(chunk) - a_end  # put the unused sentences back
            else:
                is_random = False
                tokens_b = _concat(chunk[a_end:])
            truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
            if tokens_a and tokens_b:
                out.append(PairInstance(tokens_a, tokens_b, is_random, forced, doc_index, b_doc))
            chunk, length = [], 0
        i += 1
    return out


def _sop_pair(
    chunk: list[np.ndarray], doc_index: int, max_num_tokens: int, swap_fraction: float, rng: np.random.Generator
) -> PairInstance | None:
    """A and B are consecutive spans of one document; swapped with probability `swap_fraction`.

    A one-sentence chunk is split inside the sentence (ALBERT segments need not be sentences).
    """
    if len(chunk) >= 2:
        a_end = int(rng.integers(1, len(chunk)))
        tokens_a, tokens_b = _concat(chunk[:a_end]), _concat(chunk[a_end:])
    else:
        tokens = chunk[0].tolist()
        if len(tokens) < 2:
            return None
        cut = int(rng.integers(1, len(tokens)))
        tokens_a, tokens_b = tokens[:cut], tokens[cut:]
    truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
    if not tokens_a or not tokens_b:
        return None
    swapped = bool(rng.random() < swap_fraction)
    if swapped:
        tokens_a, tokens_b = tokens_b, tokens_a
    return PairInstance(tokens_a, tokens_b, swapped, False, doc_index, doc_index)
