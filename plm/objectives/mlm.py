"""Masked-LM selection and corruption over a padded batch; one implementation for static shards and the loader.

Selection:
- `exact` (BERT): k = min(max_predictions, max(1, round(n * p))) of the n non-special positions,
  uniformly without replacement (vectorised: the k smallest random keys per row);
- `bernoulli` (HF `DataCollatorForLanguageModeling`): each non-special position with probability p.
With whole-word groups, whole groups are selected instead of tokens: `exact` takes groups in
random order and skips a group that would overshoot k (BERT's `create_masked_lm_predictions`),
`bernoulli` keeps each group with probability p.
Corruption, per selected token: `mask_fraction` -> [MASK], `random_fraction` -> a random
non-special token, the rest unchanged. Special positions are never selected, and random
replacements are drawn from `[random_low, vocab_size)`, which excludes every special token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

IGNORE = -100


@dataclass
class MaskedBatch:
    input_ids: np.ndarray  # (N, T) int32, corrupted
    labels: np.ndarray  # (N, T) int32, original id at selected positions, IGNORE elsewhere
    n_candidates: int
    n_selected: int
    n_masked: int
    n_random: int
    n_kept: int


def _select_exact(candidates: np.ndarray, k: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """k uniform positions per row without replacement: the keys at or below each row's k-th smallest key."""
    keys = rng.random(candidates.shape)
    keys[~candidates] = 2.0  # above every real key
    most = int(k.max()) if k.size else 0
    # only the `most` smallest keys of a row are ever the k-th: partition them to the front, sort just those
    smallest = np.partition(keys, most - 1, axis=1)[:, :most] if 0 < most < keys.shape[1] else keys
    kth = np.take_along_axis(np.sort(smallest, axis=1), np.maximum(k - 1, 0)[:, None], axis=1)
    return (keys <= kth) & candidates & (k[:, None] > 0)


def _select_groups(
    candidates: np.ndarray, groups: np.ndarray, k: np.ndarray, mode: str, probability: float, rng: np.random.Generator
) -> np.ndarray:
    """Whole groups (equal ids in `groups` among candidates) per row; see the module docstring."""
    selected = np.zeros_like(candidates)
    for r in range(len(candidates)):
        cand = np.flatnonzero(candidates[r])
        if not len(cand):
            continue
        ids, inverse, sizes = np.unique(groups[r, cand], return_inverse=True, return_counts=True)
        if mode == "bernoulli":
            chosen = rng.random(len(ids)) < probability
        else:
            chosen = np.zeros(len(ids), dtype=bool)
            budget = int(k[r])
            for g in rng.permutation(len(ids)):
                if sizes[g] <= budget:
                    chosen[g] = True
                    budget -= int(sizes[g])
                if budget == 0:
                    break
        selected[r, cand[chosen[inverse]]] = True
    return selected


def select_positions(
    candidates: np.ndarray,
    rng: np.random.Generator,
    *,
    probability: float,
    max_predictions: int,
    mode: Literal["exact", "bernoulli"] = "exact",
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """(N, T) bool: the positions to predict."""
    n_cand = candidates.sum(axis=1)
    k = np.minimum(np.minimum(max_predictions, np.maximum(1, np.rint(n_cand * probability))), n_cand).astype(np.int64)
    if groups is not None:
        return _select_groups(candidates, groups, k, mode, probability, rng)
    if mode == "bernoulli":
        return candidates & (rng.random(candidates.shape) < probability)
    return _select_exact(candidates, k, rng)


def mask_tokens(
    input_ids: np.ndarray,
    special: np.ndarray,
    rng: np.random.Generator,
    *,
    vocab_size: int,
    n_special: int,
    mask_id: int,
    probability: float,
    max_predictions: int,
    mask_fraction: float,
    random_fraction: float,
    mode: Literal["exact", "bernoulli"] = "exact",
    groups: np.ndarray | None = None,
) -> MaskedBatch:
    """Mask a padded (N, T) batch; `special` marks [CLS]/[SEP]/[PAD] positions (never selected).

    `n_special` is the number of special ids at the start of the vocabulary: random replacements
    are drawn from `[n_special, vocab_size)`.
    """
    candidates = ~special
    selected = select_positions(
        candidates, rng, probability=probability, max_predictions=max_predictions, mode=mode, groups=groups
    )
    labels = np.where(selected, input_ids, IGNORE).astype(np.int32)
    u = rng.random(input_ids.shape)
    to_mask = selected & (u < mask_fraction)
    to_random = selected & (u >= mask_fraction) & (u < mask_fraction + random_fraction)
    corrupted = input_ids.astype(np.int32, copy=True)
    corrupted[to_mask] = mask_id
    corrupted[to_random] = rng.integers(n_special, vocab_size, size=int(to_random.sum()), dtype=np.int32)
    n_sel, n_mask, n_rand = int(selected.sum()), int(to_mask.sum()), int(to_random.sum())
    return MaskedBatch(
        corrupted, labels,
        n_candidates=int(candidates.sum()), n_selected=n_sel, n_masked=n_mask, n_random=n_rand,
        n_kept=n_sel - n_mask - n_rand,
    )  # fmt: skip


@dataclass(frozen=True)
class DynamicMasker:
    """`mask_tokens` bound to one configuration, for masking in the training loader (RoBERTa-style).

    Called with a padded (B, T) id matrix, its attention mask and a generator; returns the
    corrupted ids and the labels. The loader seeds the generator from the batch position, so a
    resumed run sees the same masks.
    """

    vocab_size: int
    n_special: int
    mask_id: int
    special_ids: tuple[int, ...]
    probability: float
    max_predictions: int
    mask_fraction: float
    random_fraction: float
    mode: Literal["exact", "bernoulli"] = "exact"

    def __call__(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        special = np.isin(input_ids, self.special_ids) | (attention_mask == 0)
        out = mask_tokens(
            input_ids, special, rng,
            vocab_size=self.vocab_size, n_special=self.n_special, mask_id=self.mask_id,
            probability=self.probability, max_predictions=self.max_predictions,
            mask_fraction=self.mask_fraction, random_fraction=self.random_fraction, mode=self.mode,
        )  # fmt: skip
        return out.input_ids.astype(input_ids.dtype), out.labels.astype(input_ids.dtype)
