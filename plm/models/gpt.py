"""GPT-2-style decoder, read top to bottom: config, attention, MLP, block, model, LM head (after nanoGPT).

Pre-LN blocks, causal attention through `scaled_dot_product_attention` (`is_causal=True`: the flash
kernel on GPU), GELU with the tanh approximation (GPT-2's `gelu_new`), a final LayerNorm `ln_f` and an LM
head tied to the token embeddings. Parameter names match HF `GPT2LMHeadModel` (`transformer.wte.weight`,
`transformer.h.0.attn.c_attn.weight`, `transformer.ln_f.bias`, `lm_head.weight`, ...); the projections
are `nn.Linear` (weight (out, in)) where HF uses `Conv1D` (weight (in, out)): `plm.models.export`
transposes them. Shapes: B batch, T tokens, C hidden, H heads, D = C // H, V vocab.

Packed documents (`doc_index`, from CLM shards written with `objectives.clm.boundary_mask`): attention is
block-diagonal causal, so a token sees only earlier tokens of its own document, and positions restart at
0 with each document, so a document looks exactly as it would alone at the start of a sequence (the way
it is seen at inference). Without `doc_index` documents are packed GPT-2 style: one causal stream,
positions 0..T-1, documents separated only by <|endoftext|>.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from plm.models.layers import ModelConfig

IGNORE_INDEX = -100


@dataclass
class GPTConfig(ModelConfig):
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_position: int = 1024
    dropout: float = 0.1
    attention_dropout: float | None = None
    """Dropout on attention probabilities; None = `dropout` (GPT-2)."""
    layer_norm_eps: float = 1e-5


def positions_and_mask(doc_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) non-decreasing document indices -> positions restarting per document (B, T) and the
    block-diagonal causal mask (B, 1, T, T), True = may attend."""
    B, T = doc_index.shape
    t = torch.arange(T, device=doc_index.device)  # (T,)
    starts = torch.ones_like(doc_index, dtype=torch.bool)  # (B, T): True where a document begins
    starts[:, 1:] = doc_index[:, 1:] != doc_index[:, :-1]
    first = torch.where(starts, t, torch.zeros_like(t)).cummax(dim=1).values  # (B, T) index of the document start
    same_doc = doc_index[:, :, None] == doc_index[:, None, :]  # (B, T, T)
    causal = torch.ones(T, T, dtype=torch.bool, device=doc_index.device).tril()  # (T, T)
    return t - first, (same_doc & causal)[:, None]


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention: one fused q/k/v projection `c_attn`, output projection `c_proj`."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        if cfg.hidden_size % cfg.num_heads:
            raise ValueError(f"hidden_size {cfg.hidden_size} is not divisible by num_heads {cfg.num_heads}")
        self.num_heads = cfg.num_heads
        self.attention_dropout = cfg.attention_dropout_p
        self.c_attn = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.c_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        B, T, C = x.shape
        H = self.num_heads
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, H, C // H).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, T, H, C // H).transpose(1, 2)  # (B, H, T, D)
        v = v.view(B, T, H, C // H).transpose(1, 2)  # (B, H, T, D)
        p = self.attention_dropout if self.training else 0.0
        if mask is None:  # plain causal: the flash / fused kernels apply
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)  # (B, H, T, D)
        else:  # block-diagonal causal (B, 1, T, T): every row has its diagonal, so none is fully masked
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, H, T, D)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.c_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.c_fc(x), approximate="tanh")  # (B, T, 4C); GPT-2's gelu_new
        return self.dropout(self.c_proj(h))  # (B, T, C)


class Block(nn.Module):
    """Pre-LN: x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), mask)
        return x + self.mlp(self.ln_2(x))  # (B, T, C)


class GPTModel(nn.Module):
    """Embeddings, blocks and the final LayerNorm (HF `GPT2Model`): forward -> hidden states (B, T, C)."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.wpe = nn.Embedding(cfg.max_position, cfg.hidden_size)
        self.drop = nn.Dropout(cfg.dropout)
        self.h = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.ln_f = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor, doc_index: torch.Tensor | None = None) -> torch.Tensor:
        B, T = input_ids.shape
        if T > self.config.max_position:
            raise ValueError(f"sequence length {T} exceeds max_position {self.config.max_position}")
        if doc_index is None:
            pos, mask = torch.arange(T, device=input_ids.device), None  # (T,)
        else:
            pos, mask = positions_and_mask(doc_index)  # (B, T), (B, 1, T, T)
        x = self.drop(self.wte(input_ids) + self.wpe(pos))  # (B, T, C)
        for block in self.h:
            x = block(x, mask)
        return self.ln_f(x)  # (B, T, C)


def init_weights(module: nn.Module) -> None:
    """GPT-2 init: normal(0, 0.02) weights and embeddings, zero biases, LayerNorm 1/0."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class GPTLMHeadModel(nn.Module):
    """Decoder + LM head tied to `transformer.wte` (HF `GPT2LMHeadModel`)."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.config = cfg
        self.transformer = GPTModel(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.apply(init_weights)
        # GPT-2: each block adds two residual projections, so scale them by 1/sqrt(2 L) to keep the
        # residual stream's variance independent of depth.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.num_layers))
        self.tie_weights()

    def tie_weights(self) -> None:
        self.lm_head.weight = self.transformer.wte.weight

    def transformer_blocks(self) -> nn.ModuleList:
        """The decoder blocks (FSDP shards each one as its own group; `wte`/`lm_head` stay with the root)."""
        return self.transformer.h

    def num_params(self) -> int:
        """Parameters, the tied LM head counted once (GPT-2 small with a 50257 vocabulary: 124M)."""
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token, PaLM appendix B: 6 N + 12 L C T (forward + backward).

        N is every parameter except the position embeddings (a lookup); the token embeddings stay in
        because the tied LM head multiplies by them for every token. 12 L C T is attention's QK^T and
        AV counted over the full T x T square (the convention; causal kernels skip about half).
        """
        cfg = self.config
        n = self.num_params() - self.transformer.wpe.weight.numel()
        return 6.0 * n + 12.0 * cfg.num_layers * cfg.hidden_size * seq_len

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        doc_index: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Without `labels`: `logits` (B, T, V).

        With `labels` (B, T), usually `input_ids` itself: position t predicts labels[t + 1] (the shift
        happens here), targets equal to -100 are ignored. Returns `loss` (= `lm_loss`, mean over
        targets) and detached `lm_correct`/`lm_total` counts for accuracy and token-weighted perplexity.
        """
        h = self.transformer(input_ids, doc_index)  # (B, T, C)
        if labels is None:
            return {"logits": self.lm_head(h)}  # (B, T, V)

        # Unlike BERT's ~15 % predicted positions, almost every position is a target here, so gathering
        # them would save nothing and cost a copy and a host sync: project all but the last position.
        targets = labels[:, 1:].reshape(-1)  # (N,) N = B (T-1)
        logits = self.lm_head(h[:, :-1]).reshape(targets.numel(), -1)  # (N, V)
        valid = targets != IGNORE_INDEX  # (N,)
        n_valid = valid.sum()
        # sum / max(1, n): a batch without targets gives a zero loss that still reaches the graph (no NaN)
        loss = F.cross_entropy(logits.float(), targets, ignore_index=IGNORE_INDEX, reduction="sum")
        loss = loss / n_valid.clamp(min=1)
        with torch.no_grad():
            correct = ((logits.argmax(-1) == targets) & valid).sum()
        return {"loss": loss, "lm_loss": loss, "lm_correct": correct, "lm_total": n_valid.detach()}
