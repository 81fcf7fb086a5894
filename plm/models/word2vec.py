"""word2vec: skip-gram (SGNS) and CBOW with negative sampling (Mikolov et al. 2013).

Two tables: `in_embed` (the word vectors people use) and `out_embed` (the output/"context"
vectors). `forward` is the loss, for autograd and checking; `sgd_step` applies word2vec's own
update by hand: the analytic gradient of a batch, added with `index_add_` into the rows it
touches (no dense gradient, no optimizer state), which is what makes training fast on a CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Word2Vec(nn.Module):
    """Input and output embeddings; skip-gram (center -> context) or CBOW (mean of contexts -> center)."""

    def __init__(self, vocab_size: int, dim: int, cbow: bool = False) -> None:
        super().__init__()
        self.vocab_size, self.dim, self.cbow = vocab_size, dim, cbow
        self.in_embed = nn.Embedding(vocab_size, dim, sparse=True)
        self.out_embed = nn.Embedding(vocab_size, dim, sparse=True)
        self.reset_parameters()
        self._work: dict[str, torch.Tensor] = {}

    def _workspace(self, batch: int, k1: int) -> dict[str, torch.Tensor]:
        """Buffers of `sgd_step` (views of the first `batch` rows), reused across steps: fresh multi-megabyte
        temporaries per step cost page faults (reuse measured 1.4-2.4x faster per step on a CPU)."""
        dtype, d = self.in_embed.weight.dtype, self.dim
        work = self._work
        if not work or len(work["h"]) < batch or work["ids"].shape[1] != k1 or work["h"].dtype != dtype:
            work = self._work = {
                "h": torch.empty(batch, d, dtype=dtype), "ids": torch.empty(batch, k1, dtype=torch.long),
                "out": torch.empty(batch * k1, d, dtype=dtype), "scores": torch.empty(batch, k1, dtype=dtype),
                "grad_h": torch.empty(batch, 1, d, dtype=dtype), "grad_out": torch.empty(batch, k1, d, dtype=dtype),
            }  # fmt: skip
        return {name: buf[: batch * k1] if name == "out" else buf[:batch] for name, buf in work.items()}

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """word2vec's initialisation: inputs uniform(-0.5/dim, 0.5/dim), outputs zero."""
        with torch.no_grad():
            self.in_embed.weight.uniform_(-0.5 / self.dim, 0.5 / self.dim, generator=generator)
            self.out_embed.weight.zero_()

    def hidden(self, inputs: torch.Tensor, offsets: torch.Tensor | None = None) -> torch.Tensor:
        """The input vector of each example (B, D): the center's (skip-gram) or the mean of its contexts (CBOW).

        CBOW contexts come flat with `offsets` (B + 1, starting at 0), as in the example shards.
        """
        if offsets is None:
            return self.in_embed(inputs)  # (B, D)
        counts = offsets[1:] - offsets[:-1]  # (B,)
        rows = torch.repeat_interleave(torch.arange(len(counts)), counts)  # (N,) example of each context word
        summed = torch.zeros(len(counts), self.dim, dtype=self.in_embed.weight.dtype)
        summed = summed.index_add(0, rows, self.in_embed(inputs))  # (B, D)
        return summed / counts.clamp(min=1).unsqueeze(1).to(summed.dtype)

    def forward(
        self, inputs: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor, offsets: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Summed negative-sampling loss: -log s(v_t . h) - sum_n log s(-v_n . h).

        Skip-gram: `inputs` = centers (B,), `targets` = contexts (B,). CBOW: `inputs` = flat contexts
        with `offsets`, `targets` = centers. `negatives` (B, K).
        """
        h = self.hidden(inputs, offsets)  # (B, D)
        out = self.out_embed(torch.cat([targets.unsqueeze(1), negatives], dim=1))  # (B, 1 + K, D)
        scores = torch.bmm(out, h.unsqueeze(2)).squeeze(2)  # (B, 1 + K)
        return -(F.logsigmoid(scores[:, 0]).sum() + F.logsigmoid(-scores[:, 1:]).sum())

    @torch.no_grad()
    def sgd_step(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        negatives: torch.Tensor,
        lr: float,
        offsets: torch.Tensor | None = None,
        with_loss: bool = True,
    ) -> float:
        """One word2vec update on a batch; returns the batch's summed loss before the update (nan unless `with_loss`).

        Skip-gram: exactly `param -= lr * grad(forward)`. CBOW follows word2vec and gensim
        (cbow_mean=1): the error of the mean vector goes whole to every context word, not divided
        by the context size (the exact gradient of the mean would divide it).
        """
        w_in, w_out = self.in_embed.weight, self.out_embed.weight
        b, k1, d = len(targets), negatives.shape[1] + 1, self.dim
        work = self._workspace(b, k1)
        if offsets is None:
            h = torch.index_select(w_in, 0, inputs, out=work["h"])  # (B, D)
        else:
            counts = offsets[1:] - offsets[:-1]
            rows = torch.repeat_interleave(torch.arange(len(counts)), counts)  # (N,)
            h = work["h"].zero_().index_add_(0, rows, w_in.index_select(0, inputs))
            h /= counts.clamp(min=1).unsqueeze(1).to(h.dtype)
        ids = torch.cat([targets.unsqueeze(1), negatives], dim=1, out=work["ids"]).view(-1)  # (B * (1 + K),)
        out = torch.index_select(w_out, 0, ids, out=work["out"]).view(b, k1, d)  # (B, 1 + K, D)
        # Product then sum beats bmm's many tiny mat-vecs about 2x on CPU; grad_out's buffer is free until later.
        products = torch.mul(out, h.unsqueeze(1), out=work["grad_out"])  # (B, 1 + K, D)
        scores = torch.sum(products, dim=2, out=work["scores"])  # (B, 1 + K)
        loss = float("nan")
        if with_loss:
            loss = -float(F.logsigmoid(scores[:, 0]).sum() + F.logsigmoid(-scores[:, 1:]).sum())
        # d loss / d score = sigmoid(score) - label; label 1 for the target, 0 for the negatives.
        g = scores.sigmoid_()
        g[:, 0] -= 1.0
        g *= -lr  # (B, 1 + K): the step along each score's gradient
        grad_h = torch.bmm(g.unsqueeze(1), out, out=work["grad_h"]).squeeze(1)  # (B, D), before w_out moves
        grad_out = torch.mul(g.unsqueeze(2), h.unsqueeze(1), out=work["grad_out"])  # (B, 1 + K, D)
        # index_add_ sums repeated rows; single-threaded it beats index_put_(accumulate=True) by about 1.6x.
        w_out.index_add_(0, ids, grad_out.view(-1, d))
        if offsets is None:
            w_in.index_add_(0, inputs, grad_h)
        else:
            w_in.index_add_(0, inputs, grad_h.index_select(0, rows))
        return loss
