"""Masked-LM selection and corruption, vectorised over a padded batch (no per-token Python).

Selection (`exact`, BERT): k = min(max_predictions, max(1, round(n * p))) of the n non-special
positions, uniformly without replacement. Corruption: `mask_fraction` -> [MASK],
`random_fraction` -> a random non-special token, the rest unchanged. Special tokens are never
selected and never drawn as replacements.
"""

from __future__ import annotations

from dataclasses import dataclass

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
) -> MaskedBatch:
    """Mask a padded (N, T) batch; `special` marks [CLS]/[SEP]/[PAD] positions (never selected)."""
    candidates = ~special
    n_cand = candidates.sum(axis=1)
    k = np.minimum(max_predictions, np.maximum(1, np.rint(n_cand * probability))).astype(np.int64)
    k = np.minimum(k, n_cand)
    # Uniform choice without replacement per row: the k smallest random keys among candidates.
    keys = rng.random(input_ids.shape)
    keys[~candidates] = np.inf
    order = np.argsort(keys, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(input_ids.shape[1])[None, :].repeat(len(order), 0), axis=1)
    selected = (rank < k[:, None]) & candidates

    labels = np.where(selected, input_ids, IGNORE).astype(np.int32)
    u = rng.random(input_ids.shape)
    to_mask = selected & (u < mask_fraction)
    to_random = selected & (u >= mask_fraction) & (u < mask_fraction + random_fraction)
    corrupted = input_ids.astype(np.int32, copy=True)
    corrupted[to_mask] = mask_id
    corrupted[to_random] = rng.integers(n_special, vocab_size, size=int(to_random.sum()), dtype=np.int32)
    n_sel = int(selected.sum())
    return MaskedBatch(
        corrupted,
        labels,
        n_candidates=int(n_cand.sum()),
        n_selected=n_sel,
        n_masked=int(to_mask.sum()),
        n_random=int(to_random.sum()),
        n_kept=n_sel - int(to_mask.sum()) - int(to_random.sum()),
    )
