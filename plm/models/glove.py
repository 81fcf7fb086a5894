"""GloVe (Pennington et al. 2014): weighted least squares on log co-occurrence counts, fitted with AdaGrad.

J = 1/2 sum_ij f(X_ij) (w_i . c_j + b_i + b~_j - log X_ij)^2, f(x) = min(1, (x / x_max)^alpha), over the
non-zero entries. Word vectors `w`, context vectors `c`, biases `b`, `b~`, all initialised
uniform(-0.5/dim, 0.5/dim) as GloVe's C code does; the vectors people use are w + c (GloVe's default
`-model 2`). `adagrad_step` is AdaGrad written by hand on a batch of entries: the batch gradient of
each touched row (repeated rows summed), accumulator G += g^2 (starting at 1, as GloVe's `gradsq`),
then param -= lr * g / sqrt(G) -- what `torch.optim.Adagrad(initial_accumulator_value=1, eps=0)` does,
touching only the rows in the batch.
"""

from __future__ import annotations

import torch
from torch import nn


class GloVe(nn.Module):
    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__()
        self.vocab_size, self.dim = vocab_size, dim
        self.word = nn.Parameter(torch.empty(vocab_size, dim))  # (V, D) w
        self.context = nn.Parameter(torch.empty(vocab_size, dim))  # (V, D) c
        self.word_bias = nn.Parameter(torch.empty(vocab_size))  # (V,) b
        self.context_bias = nn.Parameter(torch.empty(vocab_size))  # (V,) b~
        for name in ("word", "context", "word_bias", "context_bias"):
            self.register_buffer(f"{name}_gradsq", torch.ones_like(getattr(self, name)), persistent=False)
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """GloVe's initialisation: every parameter uniform(-0.5/dim, 0.5/dim); AdaGrad accumulators 1."""
        with torch.no_grad():
            for name in ("word", "context", "word_bias", "context_bias"):
                getattr(self, name).uniform_(-0.5 / self.dim, 0.5 / self.dim, generator=generator)
                getattr(self, f"{name}_gradsq").fill_(1.0)

    @staticmethod
    def weight(x: torch.Tensor, x_max: float, alpha: float) -> torch.Tensor:
        """f(x) = min(1, (x / x_max)^alpha)."""
        return (x / x_max).pow(alpha).clamp(max=1.0)

    def forward(self, i: torch.Tensor, j: torch.Tensor, x: torch.Tensor, x_max: float, alpha: float) -> torch.Tensor:
        """The weighted least-squares loss of entries (i, j, X_ij), summed, with GloVe's factor 1/2."""
        diff = (self.word[i] * self.context[j]).sum(1) + self.word_bias[i] + self.context_bias[j] - torch.log(x)
        return 0.5 * (self.weight(x, x_max, alpha) * diff * diff).sum()

    @torch.no_grad()
    def adagrad_step(self, i: torch.Tensor, j: torch.Tensor, x: torch.Tensor, lr: float, x_max: float,
                     alpha: float) -> float:  # fmt: skip
        """One AdaGrad update on a batch of entries; returns the batch's loss before it."""
        w, c = self.word[i], self.context[j]  # (B, D)
        diff = (w * c).sum(1) + self.word_bias[i] + self.context_bias[j] - torch.log(x)  # (B,)
        fdiff = self.weight(x, x_max, alpha) * diff
        loss = 0.5 * float((fdiff * diff).sum())
        grads = (("word", i, fdiff.unsqueeze(1) * c), ("context", j, fdiff.unsqueeze(1) * w),
                 ("word_bias", i, fdiff), ("context_bias", j, fdiff))  # fmt: skip
        for name, rows, g in grads:  # all gradients from the values before any update
            rows_u, inverse = torch.unique(rows, return_inverse=True)
            summed = torch.zeros((len(rows_u), *g.shape[1:]), dtype=g.dtype).index_add_(0, inverse, g)
            param, gradsq = getattr(self, name), getattr(self, f"{name}_gradsq")
            acc = gradsq[rows_u] + summed * summed
            gradsq[rows_u] = acc
            param[rows_u] -= lr * summed / acc.sqrt()
        return loss

    @torch.no_grad()
    def vectors(self) -> torch.Tensor:
        """(V, D): word + context vectors, GloVe's output."""
        return self.word + self.context
