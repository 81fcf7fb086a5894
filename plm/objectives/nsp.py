"""Next-sentence-prediction pairs, following BERT's `create_instances_from_document`.

Per document: draw a target length (shorter with `short_seq_prob`), accumulate sentences up to
it, split the chunk at a random point into A and B; with probability `random_fraction` B is
instead a span from another document and the unused sentences are put back. Pairs are then
truncated from the longer side (front or back at random) to fit `[CLS] A [SEP] B [SEP]`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PairInstance:
    tokens_a: list[int]
    tokens_b: list[int]
    is_random_next: bool
    forced_random: bool  # the chunk had one sentence, so B had to come from another document
    a_doc: int
    b_doc: int


def truncate_seq_pair(a: list[int], b: list[int], max_tokens: int, rng: np.random.Generator) -> None:
    """Trim the longer sequence one token at a time, from the front or back at random (in place)."""
    while len(a) + len(b) > max_tokens:
        longer = a if len(a) > len(b) else b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


def _concat(segments: list[np.ndarray]) -> list[int]:
    return np.concatenate(segments).tolist() if segments else []


def create_pairs(
    documents: list[list[np.ndarray]],
    doc_index: int,
    seq_len: int,
    short_seq_prob: float,
    random_fraction: float,
    rng: np.random.Generator,
) -> list[PairInstance]:
    """All NSP instances of one document (`documents[doc_index]`), BERT's algorithm."""
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
        if i == len(document) - 1 or length >= target:
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
