"""Task heads on the BERT encoder. Names match HF `BertForSequenceClassification` (`bert.*`, `classifier.*`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from plm.models.bert import BertConfig, BertModel, init_weights


class BertForSequenceClassification(nn.Module):
    """Encoder -> pooled [CLS] vector -> dropout -> linear classifier."""

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
            out["loss"] = F.cross_entropy(logits.float(), labels)
        return out
