"""fastText: skip-gram / CBOW with negative sampling over words plus hashed character n-grams.

One input matrix as fastText lays it out: rows 0..V-1 are the words, rows V..V+buckets-1 the n-gram
buckets; `out_embed` holds the V output vectors. A word's input vector is the mean of its rows (its
own and its n-grams', `plm.objectives.subwords.subword_table`), an unseen word's the mean of its
n-gram rows. `sgd_step` is fastText's update, batched: the mean over subwords is the hidden vector,
and its error goes whole to every one of those rows (fastText's `Model::update`; gensim does the
same), added with `index_add_`. In a skip-gram batch each distinct center is expanded to its
subwords once (the trainer keeps a center's pairs together, so a batch has few distinct centers).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def expand(ids: torch.Tensor, table: torch.Tensor, offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CSR lookup: the rows of every id in `ids` (N,) flattened, and the position in `ids` each came from."""
    counts = offsets[ids + 1] - offsets[ids]  # (N,)
    owner = torch.repeat_interleave(torch.arange(len(ids)), counts)  # (M,)
    firsts = torch.cumsum(counts, 0) - counts  # (N,) where each id's run starts in the output
    position = torch.arange(int(counts.sum())) - firsts[owner] + offsets[ids][owner]
    return table[position], owner


class FastText(nn.Module):
    """Words + n-gram buckets in one input table; skip-gram (center -> context) or CBOW (contexts -> center)."""

    def __init__(
        self, vocab_size: int, buckets: int, dim: int, subword_ids: torch.Tensor, subword_offsets: torch.Tensor,
        cbow: bool = False,
    ) -> None:  # fmt: skip
        super().__init__()
        if len(subword_offsets) != vocab_size + 1:
            raise ValueError(f"subword_offsets has {len(subword_offsets)} entries for {vocab_size} words")
        self.vocab_size, self.buckets, self.dim, self.cbow = vocab_size, buckets, dim, cbow
        self.in_embed = nn.Embedding(vocab_size + buckets, dim, sparse=True)  # (V + buckets, D)
        self.out_embed = nn.Embedding(vocab_size, dim, sparse=True)  # (V, D)
        self.register_buffer("subword_ids", subword_ids.to(torch.long), persistent=False)
        self.register_buffer("subword_offsets", subword_offsets.to(torch.long), persistent=False)
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """fastText's initialisation: inputs (words and buckets) uniform(-1/dim, 1/dim), outputs zero."""
        with torch.no_grad():
            self.in_embed.weight.uniform_(-1.0 / self.dim, 1.0 / self.dim, generator=generator)
            self.out_embed.weight.zero_()

    def _rows(self, words: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return expand(words, self.subword_ids, self.subword_offsets)

    def hidden(self, inputs: torch.Tensor, offsets: torch.Tensor | None = None) -> torch.Tensor:
        """(B, D): the mean of the center's subword rows (skip-gram), or of all subword rows of the contexts (CBOW)."""
        rows, owner = self._rows(inputs)
        if offsets is not None:  # CBOW: context word k belongs to example example_of[k]
            counts = offsets[1:] - offsets[:-1]
            example_of = torch.repeat_interleave(torch.arange(len(counts)), counts)
            owner, n = example_of[owner], len(counts)
        else:
            n = len(inputs)
        return F.embedding_bag(rows, self.in_embed.weight, owner_offsets(owner, n), mode="mean")

    def forward(
        self, inputs: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor, offsets: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Summed negative-sampling loss -log s(v_t . h) - sum_n log s(-v_n . h), h = `hidden`."""
        h = self.hidden(inputs, offsets)  # (B, D)
        out = self.out_embed(torch.cat([targets.unsqueeze(1), negatives], dim=1))  # (B, 1 + K, D)
        scores = torch.bmm(out, h.unsqueeze(2)).squeeze(2)  # (B, 1 + K)
        return -(F.logsigmoid(scores[:, 0]).sum() + F.logsigmoid(-scores[:, 1:]).sum())

    @torch.no_grad()
    def sgd_step(
        self, inputs: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor, lr: float,
        offsets: torch.Tensor | None = None, with_loss: bool = True,
    ) -> float:  # fmt: skip
        """One fastText update on a batch; the summed loss before it (nan unless `with_loss`).

        Output rows: exactly SGD on `forward`. Input rows: each subword row of an example gets the
        example's whole hidden-vector step (not divided by the number of rows), as fastText does.
        """
        w_in, w_out = self.in_embed.weight, self.out_embed.weight
        if offsets is None:  # skip-gram: distinct centers, each expanded once
            units, example_unit = torch.unique(inputs, return_inverse=True)
            rows, owner = self._rows(units)
            n_units = len(units)
        else:  # CBOW: one unit per example, its rows those of all its context words
            counts = offsets[1:] - offsets[:-1]
            rows, ctx_of = self._rows(inputs)
            owner = torch.repeat_interleave(torch.arange(len(counts)), counts)[ctx_of]
            n_units, example_unit = len(counts), torch.arange(len(counts))
        sums = torch.zeros(n_units, self.dim, dtype=w_in.dtype).index_add_(0, owner, w_in.index_select(0, rows))
        sizes = torch.bincount(owner, minlength=n_units).clamp(min=1).unsqueeze(1).to(w_in.dtype)
        h = (sums / sizes).index_select(0, example_unit)  # (B, D)
        b, k1 = len(targets), negatives.shape[1] + 1
        ids = torch.cat([targets.unsqueeze(1), negatives], dim=1).view(-1)  # (B * (1 + K),)
        out = w_out.index_select(0, ids).view(b, k1, self.dim)  # (B, 1 + K, D)
        scores = (out * h.unsqueeze(1)).sum(dim=2)  # (B, 1 + K)
        loss = float("nan")
        if with_loss:
            loss = -float(F.logsigmoid(scores[:, 0]).sum() + F.logsigmoid(-scores[:, 1:]).sum())
        g = scores.sigmoid_()
        g[:, 0] -= 1.0
        g *= -lr  # (B, 1 + K)
        grad_h = torch.bmm(g.unsqueeze(1), out).squeeze(1)  # (B, D), before w_out moves
        w_out.index_add_(0, ids, (g.unsqueeze(2) * h.unsqueeze(1)).view(-1, self.dim))
        grad_units = torch.zeros(n_units, self.dim, dtype=w_in.dtype).index_add_(0, example_unit, grad_h)
        w_in.index_add_(0, rows, grad_units.index_select(0, owner))
        return loss

    @torch.no_grad()
    def word_vectors(self, batch: int = 4096) -> torch.Tensor:
        """(V, D): every vocabulary word's vector, the mean of its own row and its n-gram rows."""
        parts = []
        for lo in range(0, self.vocab_size, batch):
            words = torch.arange(lo, min(lo + batch, self.vocab_size))
            rows, owner = self._rows(words)
            parts.append(F.embedding_bag(rows, self.in_embed.weight, owner_offsets(owner, len(words)), mode="mean"))
        return torch.cat(parts) if parts else torch.zeros(0, self.dim)

    @torch.no_grad()
    def ngram_vector(self, buckets: list[int]) -> torch.Tensor:
        """(D,): the vector of an unseen word from its n-gram buckets (the mean of their rows; zeros for none)."""
        if not buckets:
            return torch.zeros(self.dim, dtype=self.in_embed.weight.dtype)
        return self.in_embed.weight[torch.tensor(buckets, dtype=torch.long) + self.vocab_size].mean(0)


def owner_offsets(owner: torch.Tensor, n: int) -> torch.Tensor:
    """EmbeddingBag offsets (n,) of a sorted owner index (M,): where each of the n bags starts."""
    return torch.searchsorted(owner, torch.arange(n))
