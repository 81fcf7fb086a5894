"""BERT encoder and its pretraining heads (MLM + NSP), read top to bottom: config, embeddings, model, heads.

Parameter names match HF `transformers.BertForPreTraining` (`bert.embeddings.word_embeddings.weight`,
`bert.encoder.layer.0.attention.self.query.weight`, `cls.predictions.transform.dense.weight`, ...);
the MLM decoder weight is tied to the word embeddings.

`norm="pre"` gives a pre-LN encoder in the layout of HF `MegatronBertForPreTraining` (HF has no pre-LN
`BertModel`): no LayerNorm after the embeddings, each block x + attn(LN(x)), x + ffn(LN(x)), and one final
LayerNorm at the end of the encoder (`bert.encoder.ln`), so the pooler, the MLM head and fine-tuning
heads all read normalised states. Shapes: B batch, T tokens, C hidden, V vocab,
N predicted positions in the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from plm.models.layers import ModelConfig, PreLNTransformerBlock, TransformerBlock, key_padding_mask

IGNORE_INDEX = -100


@dataclass
class BertConfig(ModelConfig):
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_position: int = 512
    type_vocab_size: int = 2
    dropout: float = 0.1
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    attention_dropout: float | None = None
    """Dropout on attention probabilities; None = `dropout` (BERT). 0 lets CPU attention use its fused
    kernel: ~25 % faster training of the small model on CPU (dropout forces the unfused path)."""
    norm: str = "post"
    """`post` (original BERT, HF `BertForPreTraining`) or `pre` (HF `MegatronBertForPreTraining` layout)."""

    def __post_init__(self) -> None:
        if self.norm not in ("post", "pre"):
            raise ValueError(f"norm must be 'post' or 'pre', not {self.norm!r}")


def init_weights(module: nn.Module) -> None:
    """BERT init: normal(0, 0.02) weights, zero biases, LayerNorm 1/0, zero padding embedding."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class Embeddings(nn.Module):
    """word + position + token type, then LayerNorm (post-LN only) and dropout (HF `BertEmbeddings`).

    Pre-LN has no LayerNorm here (Megatron-BERT): the first block's `attention.ln` normalises its input.
    """

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_token_id)
        self.position_embeddings = nn.Embedding(cfg.max_position, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps) if cfg.norm == "post" else None
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        T = input_ids.shape[1]
        pos = torch.arange(T, device=input_ids.device)  # (T,)
        x = self.word_embeddings(input_ids) + self.position_embeddings(pos) + self.token_type_embeddings(token_type_ids)
        if self.LayerNorm is not None:
            x = self.LayerNorm(x)
        return self.dropout(x)  # (B, T, C)


class Encoder(nn.Module):
    """The stack of blocks; pre-LN adds the final LayerNorm `ln` (HF `MegatronBertEncoder.ln`)."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        block = TransformerBlock if cfg.norm == "post" else PreLNTransformerBlock
        self.layer = nn.ModuleList(
            block(
                cfg.hidden_size, cfg.num_heads, cfg.intermediate_size, cfg.dropout, cfg.layer_norm_eps,
                attention_dropout=cfg.attention_dropout_p,
            )
            for _ in range(cfg.num_layers)
        )
        self.ln = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps) if cfg.norm == "pre" else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        for block in self.layer:
            x = block(x, mask)
        if self.ln is not None:
            x = self.ln(x)
        return x  # (B, T, C)


class Pooler(nn.Module):
    """tanh(dense(hidden state of [CLS])): the sentence vector used by NSP and classifiers."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(x[:, 0]))  # (B, C)


class BertModel(nn.Module):
    """The encoder: forward(input_ids, token_type_ids, attention_mask) -> (sequence (B, T, C), pooled (B, C))."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.config = cfg
        self.embeddings = Embeddings(cfg)
        self.encoder = Encoder(cfg)
        self.pooler = Pooler(cfg)

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        unpadded: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`attention_mask` None: padding is where input_ids == pad_token_id. `unpadded=True` (the caller
        knows that no position is padding): attention runs without a mask, so the flash kernel applies on GPU."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        mask = None
        if not unpadded:
            if attention_mask is None:
                attention_mask = input_ids != self.config.pad_token_id
            mask = key_padding_mask(attention_mask)  # (B, 1, 1, T)
        x = self.embeddings(input_ids, token_type_ids)  # (B, T, C)
        x = self.encoder(x, mask)  # (B, T, C)
        return x, self.pooler(x)


class PredictionHeadTransform(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(F.gelu(self.dense(h)))


class LMPredictionHead(nn.Module):
    """transform -> decoder (weight tied to the word embeddings) + a separate output bias."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.transform = PredictionHeadTransform(cfg)
        self.decoder = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(h)) + self.bias  # (..., V)


class PreTrainingHeads(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.predictions = LMPredictionHead(cfg)
        self.seq_relationship = nn.Linear(cfg.hidden_size, 2)


class BertForPreTraining(nn.Module):
    """Encoder + MLM and NSP heads. The MLM head runs only at positions with a label (labels != -100)."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.config = cfg
        self.bert = BertModel(cfg)
        self.cls = PreTrainingHeads(cfg)
        self.apply(init_weights)
        self.tie_weights()

    def tie_weights(self) -> None:
        self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight

    def transformer_blocks(self) -> nn.ModuleList:
        """The encoder blocks (FSDP shards each one as its own group; the embeddings and the tied decoder stay
        with the root)."""
        return self.bert.encoder.layer

    def num_params(self) -> int:
        """Parameters, the tied decoder counted once (BERT-base with a 30522 vocabulary: 110M)."""
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, seq_len: int, predicted_fraction: float = 1.0) -> float:
        """Training FLOPs per input token, PaLM appendix B: 6 N + 12 L C T (forward + backward).

        N counts the weights that do a matmul per token: the encoder, pooler and NSP head, plus the MLM
        head (transform and the tied decoder V x C) scaled by `predicted_fraction`, since this model runs
        it only at predicted positions (1.0 = the usual convention, the head on every token). Position
        and token-type embeddings are lookups and are left out. 12 L C T is attention's QK^T and AV.
        """
        emb = self.bert.embeddings
        lookups = sum(p.numel() for p in emb.parameters())  # word embeddings included: re-added below as the decoder
        head = sum(p.numel() for p in self.cls.predictions.parameters())  # transform + bias + tied decoder
        body = self.num_params() - lookups - (head - emb.word_embeddings.weight.numel())
        n = body + head * predicted_fraction
        cfg = self.config
        return 6.0 * n + 12.0 * cfg.num_layers * cfg.hidden_size * seq_len

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        nsp_label: torch.Tensor | None = None,
        mlm_positions: torch.Tensor | None = None,
        unpadded: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Without targets: `prediction_logits` (B, T, V) and `seq_relationship_logits` (B, 2).

        With `labels` (B, T) and `nsp_label` (B,): loss = mlm_loss + nsp_loss (each a mean), and
        detached correct/total counts so that a caller can aggregate accuracies over batches.
        `mlm_positions` (P,) (from `plm.train.loader.mlm_positions`, made on the host): the flat indices
        of the predicted positions, padded with B * T to a fixed multiple, so that the step has static
        shapes and no device-to-host sync (a boolean gather needs both); same loss and gradients.
        """
        seq, pooled = self.bert(input_ids, token_type_ids, attention_mask, unpadded)  # (B, T, C), (B, C)
        nsp_logits = self.cls.seq_relationship(pooled)  # (B, 2)
        if labels is None or nsp_label is None:
            return {"prediction_logits": self.cls.predictions(seq), "seq_relationship_logits": nsp_logits}

        # Gather the ~15 % predicted positions first: the (N, V) projection is the most expensive
        # matmul of a small model, and computing it for every token wastes ~85 % of it.
        if mlm_positions is None:
            selected = labels != IGNORE_INDEX  # (B, T)
            targets = labels[selected]  # (N,)
            mlm_logits = self.cls.predictions(seq[selected])  # (N, V)
            n_targets = torch.full((), targets.numel(), device=labels.device)
            if targets.numel():
                mlm_loss = F.cross_entropy(mlm_logits.float(), targets)
            else:  # a batch without predictions: zero loss that still reaches the graph
                mlm_loss = mlm_logits.sum() * 0.0
        else:
            real = mlm_positions < labels.numel()  # (P,) False = padding
            index = mlm_positions.clamp(max=labels.numel() - 1)  # (P,)
            targets = labels.reshape(-1)[index].masked_fill(~real, IGNORE_INDEX)  # (P,)
            mlm_logits = self.cls.predictions(seq.reshape(-1, seq.shape[-1])[index])  # (P, V)
            n_targets = (targets != IGNORE_INDEX).sum()
            # sum / max(1, n): padded rows add nothing; a batch without predictions gives a zero loss in the graph
            mlm_loss = F.cross_entropy(mlm_logits.float(), targets, ignore_index=IGNORE_INDEX, reduction="sum")
            mlm_loss = mlm_loss / n_targets.clamp(min=1)
        nsp_loss = F.cross_entropy(nsp_logits.float(), nsp_label)
        with torch.no_grad():
            mlm_correct = ((mlm_logits.argmax(-1) == targets) & (targets != IGNORE_INDEX)).sum()
            nsp_correct = (nsp_logits.argmax(-1) == nsp_label).sum()
        return {
            "loss": mlm_loss + nsp_loss,
            "mlm_loss": mlm_loss,
            "nsp_loss": nsp_loss,
            "mlm_correct": mlm_correct,
            "mlm_total": n_targets.detach(),
            "nsp_correct": nsp_correct,
            # torch.full, not torch.tensor: a host scalar copied to the GPU would be a sync
            "nsp_total": torch.full((), nsp_label.numel(), device=labels.device),
        }
