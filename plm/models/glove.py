"""GloVe (Pennington et al. 2014): weighted least squares on log co-occurrence counts, fitted with AdaGrad.

J = 1/2 sum_ij f(X_ij) (w_i . c_j + b_i + b~_j - log X_ij)^2, f(x) = min(1, (x / x_max)^alpha), over the
non-zero entries. Word vectors `w`, context vectors `c`, biases `b`, `b~`, all initialised
uniform(-0.5/dim, 0.5/dim) as GloVe's C code does; the vectors people use are w + c (GloVe's default
`-model 2`). `adagrad_step` is AdaGrad written by hand on a batch of entries: the batch gradient of
each touched row (repeated rows summed), accumulator G += g^2, then param -= lr * g / (sqrt(G) + eps)
-- what `torch.optim.Adagrad(initial_accumulator_value=G0, eps=1e-10)` does, touching only the rows in
the batch. G0 is AdaGrad's 0 by default; GloVe's C code starts `gradsq` at 1, which with small counts
(most X_ij < 1 on a small corpus, so f(X) ~ 0.02 and gradients ~ 1e-4) turns AdaGrad into plain SGD
with tiny steps, and the vectors hardly leave their initialisation (see the README's figures).
"""

from __future__ import annotations

import torch
from torch import nn

EPS = 1e-10  # torch.optim.Adagrad's default


class GloVe(nn.Module):
    def __init__(self, vocab_size: int, dim: int, initial_accumulator: float = 0.0) -> None:
        super().__init__()
        self.vocab_size, self.dim, self.initial_accumulator = vocab_size, dim, initial_accumulator
        self.word = nn.Parameter(torch.empty(vocab_size, dim))  # (V, D) w
        self.context = nn.Parameter(torch.empty(vocab_size, dim))  # (V, D) c
        self.word_bias = nn.Parameter(torch.empty(vocab_size))  # (V,) b
        self.context_bias = nn.Parameter(torch.empty(vocab_size))  # (V,) b~
        for name in ("word", "context", "word_bias", "context_bias"):
            self.register_buffer(f"{name}_gradsq", torch.ones_like(getattr(self, name)), persistent=False)
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """GloVe's initialisation: every parameter uniform(-0.5/dim, 0.5/dim); AdaGrad accumulators G0."""
        with torch.no_grad():
            for name in ("word", "context", "word_bias", "context_bias"):
                getattr(self, name).uniform_(-0.5 / self.dim, 0.5 / self.dim, generator=generator)
                getattr(self, f"{name}_gradsq").fill_(self.initial_accumulator)

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
        grad_w, grad_c = fdiff.unsqueeze(1) * c, fdiff.unsqueeze(1) * w  # all from the values before any update
        for rows, pairs in ((i, (("word", grad_w), ("word_bias", fdiff))), (j, (("context", grad_c),
                                                                                ("context_bias", fdiff)))):
            rows_u, inverse = torch.unique(rows, return_inverse=True)  # one sort per side, shared with its bias
            for name, g in pairs:
                summed = torch.zeros((len(rows_u), *g.shape[1:]), dtype=g.dtype).index_add_(0, inverse, g)
                param, gradsq = getattr(self, name), getattr(self, f"{name}_gradsq")
                acc = gradsq[rows_u] + summed * summed
                gradsq[rows_u] = acc
                param[rows_u] -= lr * summed / (acc.sqrt() + EPS)
        return loss

    @torch.no_grad()
    def vectors(self) -> torch.Tensor:
        """(V, D): word + context vectors, GloVe's output."""
        return self.word + self.context
