"""plm models <-> HF `transformers` state dicts and config dicts. Pure: no file I/O (see `plm.train.export`).

| plm model | HF class | `model_type` |
|---|---|---|
| `BertForPreTraining`, norm="post" | `BertForPreTraining` | `bert` |
| `BertForPreTraining`, norm="pre" | `MegatronBertForPreTraining` (HF's pre-LN BERT) | `megatron-bert` |
| `GPTLMHeadModel` | `GPT2LMHeadModel` | `gpt2` |

plm already uses HF parameter names, so the mapping is: BERT adds HF's alias of the MLM output bias
(`cls.predictions.decoder.bias`), GPT transposes the four projections HF stores as `Conv1D` (weight
(in, out)). `to_hf` returns every key HF's `state_dict()` has, tied aliases included (the same tensor),
so `hf_model.load_state_dict(sd)` is strict; `HF_TIED` lists the aliases a saved file leaves out, as
`save_pretrained` does.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from plm.models.bert import BertConfig, BertForPreTraining
from plm.models.gpt import GPTConfig, GPTLMHeadModel

PlmConfig = BertConfig | GPTConfig
PlmModel = BertForPreTraining | GPTLMHeadModel

# model_type -> {tied alias: the key it shares storage with}
HF_TIED: dict[str, dict[str, str]] = {
    "bert": {
        "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
        "cls.predictions.decoder.bias": "cls.predictions.bias",
    },
    "gpt2": {"lm_head.weight": "transformer.wte.weight"},
}
HF_TIED["megatron-bert"] = HF_TIED["bert"]
ARCHITECTURES = {"bert": "BertForPreTraining", "megatron-bert": "MegatronBertForPreTraining", "gpt2": "GPT2LMHeadModel"}
_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
INIT_RANGE = 0.02
# Non-parameter buffers that older HF checkpoints persisted (position ids, GPT-2's causal-mask buffers).
_HF_BUFFERS = ("embeddings.position_ids", ".attn.bias", ".attn.masked_bias")


def tied_keys(model: nn.Module) -> list[str]:
    """State-dict keys whose tensor is the same parameter as an earlier key (e.g. a tied decoder)."""
    seen: set[int] = set()
    tied = []
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            tied.append(name)
        seen.add(id(tensor))
    return tied


def model_type(cfg: PlmConfig) -> str:
    """The HF `model_type` a plm config exports to."""
    if isinstance(cfg, GPTConfig):
        return "gpt2"
    return "bert" if cfg.norm == "post" else "megatron-bert"


def hf_config(cfg: PlmConfig) -> dict[str, Any]:
    """The HF `config.json` dict for a plm config (special-token ids are added by the exporter)."""
    kind = model_type(cfg)
    common = {"architectures": [ARCHITECTURES[kind]], "model_type": kind, "vocab_size": cfg.vocab_size,
              "initializer_range": INIT_RANGE, "tie_word_embeddings": True, "dtype": "float32"}  # fmt: skip
    if isinstance(cfg, GPTConfig):
        return common | {
            "n_embd": cfg.hidden_size,
            "n_layer": cfg.num_layers,
            "n_head": cfg.num_heads,
            "n_inner": cfg.intermediate_size,
            "n_positions": cfg.max_position,
            "activation_function": "gelu_new",
            "resid_pdrop": cfg.dropout,
            "embd_pdrop": cfg.dropout,
            "attn_pdrop": cfg.attention_dropout_p,
            "layer_norm_epsilon": cfg.layer_norm_eps,
            "scale_attn_weights": True,
            "use_cache": True,
            "bos_token_id": None,
            "eos_token_id": None,
        }
    return common | {
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "intermediate_size": cfg.intermediate_size,
        "max_position_embeddings": cfg.max_position,
        "type_vocab_size": cfg.type_vocab_size,
        "layer_norm_eps": cfg.layer_norm_eps,
        "hidden_act": "gelu",
        "hidden_dropout_prob": cfg.dropout,
        "attention_probs_dropout_prob": cfg.attention_dropout_p,
        "pad_token_id": cfg.pad_token_id,
        "position_embedding_type": "absolute",
    }


def _attention_dropout(dropout: float, attention: float) -> float | None:
    return None if attention == dropout else attention  # None: "same as dropout", as plm configs say it


def config_from_hf(hf: dict[str, Any]) -> PlmConfig:
    """The plm config of an HF config dict (`bert`, `megatron-bert` or `gpt2`); other activations refused."""
    kind = hf.get("model_type")
    if kind == "gpt2":
        if hf.get("activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
            raise ValueError(f"gpt2 activation {hf['activation_function']!r}: plm's GPT uses gelu_new (tanh)")
        c = hf["n_embd"]
        dropout = hf.get("resid_pdrop", 0.1)
        return GPTConfig(
            vocab_size=hf["vocab_size"], hidden_size=c, num_layers=hf["n_layer"], num_heads=hf["n_head"],
            intermediate_size=hf.get("n_inner") or 4 * c, max_position=hf.get("n_positions", 1024),
            dropout=dropout, attention_dropout=_attention_dropout(dropout, hf.get("attn_pdrop", dropout)),
            layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        )  # fmt: skip
    if kind in ("bert", "megatron-bert"):
        if hf.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"{kind} activation {hf['hidden_act']!r}: plm's BERT uses exact gelu")
        dropout = hf.get("hidden_dropout_prob", 0.1)
        return BertConfig(
            vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"], num_layers=hf["num_hidden_layers"],
            num_heads=hf["num_attention_heads"], intermediate_size=hf["intermediate_size"],
            max_position=hf.get("max_position_embeddings", 512), type_vocab_size=hf.get("type_vocab_size", 2),
            dropout=dropout, layer_norm_eps=hf.get("layer_norm_eps", 1e-12), pad_token_id=hf.get("pad_token_id") or 0,
            attention_dropout=_attention_dropout(dropout, hf.get("attention_probs_dropout_prob", dropout)),
            norm="pre" if kind == "megatron-bert" else "post",
        )  # fmt: skip
    raise ValueError(f"unsupported model_type {kind!r}: plm loads bert, megatron-bert and gpt2")


def _is_conv1d(key: str) -> bool:
    return key.startswith("transformer.h.") and key.endswith(_CONV1D)


def to_hf(model: PlmModel) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict with HF names and layouts, HF config dict) of a plm BERT or GPT pretraining model."""
    cfg = model.config
    kind = model_type(cfg)
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    if kind == "gpt2":
        sd = {k: v.t().contiguous() if _is_conv1d(k) else v for k, v in sd.items()}
    for alias, source in HF_TIED[kind].items():
        sd[alias] = sd[source]
    return sd, hf_config(cfg)


def from_hf(state_dict: dict[str, torch.Tensor], hf: dict[str, Any]) -> PlmModel:
    """A plm model with the weights of an HF `BertForPreTraining` / `MegatronBertForPreTraining` /
    `GPT2LMHeadModel` state dict (tied aliases may be absent); raises on missing or unexpected keys."""
    cfg = config_from_hf(hf)
    kind = model_type(cfg)
    sd = {k: v for k, v in state_dict.items() if k not in HF_TIED[kind] and not k.endswith(_HF_BUFFERS)}
    if kind == "gpt2":
        sd = {k: v.t() if _is_conv1d(k) else v for k, v in sd.items()}
    model: PlmModel = GPTLMHeadModel(cfg) if isinstance(cfg, GPTConfig) else BertForPreTraining(cfg)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if k not in tied_keys(model)]
    if missing or unexpected:
        raise ValueError(f"{kind} weights do not match the config: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    return model
