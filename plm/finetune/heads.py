"""Task heads. Names match HF (`bert.*` + `classifier.*` / `qa_outputs.*`).

- `BertForSequenceClassification`: pooled [CLS] -> linear; `num_labels == 1` is regression (MSE), as in HF.
- `BertForQuestionAnswering`: every token -> (start, end) logits; loss = mean of the two cross-entropies.
- `EmbeddingBagClassifier`: the feature-based word2vec model (no BERT): mean of word vectors -> MLP.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from plm.models.bert import BertConfig, BertModel, init_weights


class BertForSequenceClassification(nn.Module):
    """Encoder -> pooled [CLS] vector -> dropout -> linear classifier (or a single regression output)."""

    def __init__(self, cfg: BertConfig, num_labels: int) -> None:
        super().__init__()
        self.config = cfg
        self.num_labels = num_labels
        self.bert = BertModel(cfg)
        self.dropout = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(cfg.hidden_size, num_labels)
        self.apply(init_weights)

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        _, pooled = self.bert(input_ids, token_type_ids, attention_mask)  # (B, C)
        logits = self.classifier(self.dropout(pooled))  # (B, num_labels)
        out = {"logits": logits}
        if labels is not None:
            if self.num_labels == 1:
                out["loss"] = F.mse_loss(logits.float().squeeze(-1), labels.float())
            else:
                out["loss"] = F.cross_entropy(logits.float(), labels)
        return out


class BertForQuestionAnswering(nn.Module):
    """Encoder -> per-token linear -> start and end logits over the window's positions."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.config = cfg
        self.bert = BertModel(cfg)
        self.qa_outputs = nn.Linear(cfg.hidden_size, 2)
        self.apply(init_weights)

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        hidden, _ = self.bert(input_ids, token_type_ids, attention_mask)  # (B, T, C)
        start, end = self.qa_outputs(hidden).float().unbind(-1)  # (B, T) each
        if attention_mask is not None:  # padding can never be a boundary
            start = start.masked_fill(attention_mask == 0, -1e4)
            end = end.masked_fill(attention_mask == 0, -1e4)
        out = {"start_logits": start, "end_logits": end}
        if start_positions is not None and end_positions is not None:
            out["loss"] = (F.cross_entropy(start, start_positions) + F.cross_entropy(end, end_positions)) / 2
        return out


class EmbeddingBagClassifier(nn.Module):
    """Word ids -> embedding (word2vec vectors or random) -> masked mean -> MLP -> logits (1 = regression).

    Pairs are combined as [u, v, |u - v|, u * v] (InferSent), so one model serves single and pair tasks.
    Id 0 is padding, id 1 the unknown word (both left out of the mean); word i of the vocabulary is id
    i + 2. `hidden=0` makes the head one linear layer (the `features` strategy's logistic regression).
    """

    def __init__(self, vocab_size: int, dim: int, hidden: int, num_labels: int, pair: bool, dropout: float) -> None:
        super().__init__()
        self.num_labels = num_labels
        self.pair = pair
        self.embeddings = nn.Embedding(vocab_size, dim, padding_idx=0)
        width = dim * (4 if pair else 1)
        if hidden:
            self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, num_labels))
        else:
            self.mlp = nn.Sequential(nn.Linear(width, num_labels))

    def _embed(self, ids: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
        """Rows of the table; ids from `vocab_size` on are rows of `extra` (words met only when serving)."""
        if extra is None:
            return self.embeddings(ids)
        n = self.embeddings.num_embeddings
        known = self.embeddings(ids.clamp(max=n - 1))
        return torch.where((ids < n).unsqueeze(-1), known, extra.to(known.dtype)[(ids - n).clamp(min=0)])

    def _pool(self, ids: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        mask = (ids > 1).unsqueeze(-1).float()  # (B, T, 1): known words only
        return (self._embed(ids, extra) * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B, dim)

    def features(
        self, input_ids: torch.Tensor, pair_ids: torch.Tensor | None = None, extra: torch.Tensor | None = None
    ) -> torch.Tensor:
        """What the head sees: the pooled text (pairs: [u, v, |u - v|, u * v]); `extra`: rows past the table."""
        u = self._pool(input_ids, extra)
        if self.pair:
            if pair_ids is None:
                raise ValueError("a pair model needs pair_ids")
            v = self._pool(pair_ids, extra)
            u = torch.cat([u, v, (u - v).abs(), u * v], dim=-1)
        return u

    def forward(
        self, input_ids: torch.Tensor, pair_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
        extra: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:  # fmt: skip
        logits = self.mlp(self.features(input_ids, pair_ids, extra))
        out = {"logits": logits}
        if labels is not None:
            if self.num_labels == 1:
                out["loss"] = F.mse_loss(logits.float().squeeze(-1), labels.float())
            else:
                out["loss"] = F.cross_entropy(logits.float(), labels)
        return out
