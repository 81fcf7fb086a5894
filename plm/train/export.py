"""Model folders on disk: plm's own format for every architecture, and HF `transformers` exports.

plm's folder (`save_model_dir` / `load_model_dir`): `model.safetensors` (tied weights stored once) and
`config.json` = the model config's fields plus `arch` (`bert` | `gpt`; a folder without it is BERT, as
written before GPT existed). Used by pretraining, fine-tuning and the registry.

HF export (`export_hf` / `load_hf_export`): a folder that `transformers` loads unchanged with
`AutoModelForPreTraining` / `BertForPreTraining` (post-LN BERT), `MegatronBertForPreTraining` (pre-LN
BERT), `GPT2LMHeadModel` (GPT), and `AutoTokenizer` / `PreTrainedTokenizerFast`: `model.safetensors`
without the tied aliases (as `save_pretrained` writes it), `config.json`, `generation_config.json` (GPT),
`tokenizer.json` (the trained file, byte for byte), `tokenizer_config.json`, `special_tokens_map.json`.
Both writers fill a temp dir and rename it, so a folder that exists is complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from plm.models.bert import BertConfig, BertForPreTraining
from plm.models.export import HF_TIED, PlmConfig, PlmModel, from_hf, tied_keys, to_hf
from plm.models.gpt import GPTConfig, GPTLMHeadModel
from plm.tokenizer.specials import family_of, hf_tokenizer_kwargs

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
GENERATION_CONFIG = "generation_config.json"
TOKENIZER = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL_TOKENS_MAP = "special_tokens_map.json"

ARCHS: dict[str, tuple[type[BertConfig] | type[GPTConfig], type[BertForPreTraining] | type[GPTLMHeadModel]]] = {
    "bert": (BertConfig, BertForPreTraining),
    "gpt": (GPTConfig, GPTLMHeadModel),
}


def arch_of(model: torch.nn.Module) -> str:
    """`gpt` for a model whose config is a `GPTConfig`, else `bert` (pretraining models and classifiers)."""
    return "gpt" if isinstance(getattr(model, "config", None), GPTConfig) else "bert"


@contextmanager
def _atomic_dir(out_dir: Path) -> Iterator[Path]:
    """Yield a temp dir beside `out_dir`; on success it replaces `out_dir`, on error it is removed."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".", suffix=".tmp", dir=out_dir.parent))
    try:
        yield tmp
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def save_model_dir(model: torch.nn.Module, config: dict[str, Any], model_dir: Path,
                   state: dict[str, torch.Tensor] | None = None) -> Path:
    """Write model.safetensors (tied weights once) + config.json (`config` plus `arch`) atomically.

    `config` is normally `model.config.to_dict()`, with extra keys for classifiers (num_labels, ...);
    `arch` is taken from `config` when present, else from the model. An existing `model_dir` is replaced.
    `state`: the full state dict when `model` holds only shards of it (FSDP); default `model.state_dict()`.
    """
    model_dir = Path(model_dir)
    skip = set(tied_keys(model))
    state = model.state_dict() if state is None else state
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items() if k not in skip}
    with _atomic_dir(model_dir) as tmp:
        save_file(tensors, str(tmp / WEIGHTS), metadata={"format": "pt"})
        _write_json(tmp / CONFIG, {"arch": arch_of(model)} | config)
    return model_dir


def load_model_dir(model_dir: Path) -> tuple[PlmModel, PlmConfig]:
    """A pretraining model (`BertForPreTraining` or `GPTLMHeadModel`, by config.json's `arch`) from
    `save_model_dir` output, tied weights re-tied; raises when the weights do not fit the config."""
    model_dir = Path(model_dir)
    raw = json.loads((model_dir / CONFIG).read_text(encoding="utf-8"))
    arch = raw.get("arch", "bert")
    if arch not in ARCHS:
        raise ValueError(f"{model_dir}: arch {arch!r} is not a transformer plm can load here (expected bert or gpt)")
    config_cls, model_cls = ARCHS[arch]
    cfg = config_cls.from_dict(raw)
    model = model_cls(cfg)  # type: ignore[arg-type]
    missing, unexpected = model.load_state_dict(load_file(str(model_dir / WEIGHTS)), strict=False)
    missing = [k for k in missing if k not in tied_keys(model)]
    if missing or unexpected:
        raise ValueError(f"{model_dir}: weights do not match the config (missing {missing}, unexpected {unexpected})")
    model.tie_weights()
    return model, cfg


def _tokenizer_config(tok: Tokenizer, family: str, cfg: PlmConfig) -> dict[str, Any]:
    # GPT-2 adds wte(token_type_ids) to its input when given them: never hand them to a GPT.
    inputs = ["input_ids", "attention_mask"] if isinstance(cfg, GPTConfig) else ["input_ids", "token_type_ids", "attention_mask"]
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": cfg.max_position,
        "model_input_names": inputs,
        "padding_side": "right",
        "clean_up_tokenization_spaces": False,  # decode exactly what the tokenizer's decoder gives
        **hf_tokenizer_kwargs(family),  # type: ignore[arg-type]
    }


def _special_ids(tok: Tokenizer, family: str) -> dict[str, int]:
    """`pad_token_id`, `bos_token_id`, `eos_token_id` for config.json, as far as the family has them."""
    kw = hf_tokenizer_kwargs(family)  # type: ignore[arg-type]  # {"pad_token": "<pad>", ...}
    ids = {f"{key}_id": tok.token_to_id(token) for key, token in kw.items()}
    return {k: v for k, v in ids.items() if k in ("pad_token_id", "bos_token_id", "eos_token_id") and v is not None}


def export_hf(model: PlmModel, tokenizer_path: Path, out_dir: Path, family: str) -> Path:
    """Write `model` and the tokenizer at `tokenizer_path` (special tokens of `family`: bert | gpt) as a
    folder `transformers` loads unchanged (see the module docstring); returns `out_dir`.

    Refuses a tokenizer whose family is not `family` or whose vocabulary is larger than the model's.
    """
    tokenizer_path, out_dir = Path(tokenizer_path), Path(out_dir)
    tok = Tokenizer.from_file(str(tokenizer_path))
    if family_of(tok) != family:
        raise ValueError(f"{tokenizer_path} has {family_of(tok)}-family special tokens, not {family}")
    if tok.get_vocab_size() > model.config.vocab_size:
        raise ValueError(f"tokenizer vocabulary {tok.get_vocab_size()} > model vocab_size {model.config.vocab_size}")
    state, config = to_hf(model)
    kind = config["model_type"]
    tensors = {k: v.cpu().contiguous() for k, v in state.items() if k not in HF_TIED[kind]}
    ids = _special_ids(tok, family)
    if kind != "gpt2":
        ids = {"pad_token_id": model.config.pad_token_id}  # BERT's padding row is the model's own
    config |= ids
    with _atomic_dir(out_dir) as tmp:
        save_file(tensors, str(tmp / WEIGHTS), metadata={"format": "pt"})
        _write_json(tmp / CONFIG, config)
        if kind == "gpt2":
            _write_json(tmp / GENERATION_CONFIG, {"_from_model_config": True, **ids})
        shutil.copyfile(tokenizer_path, tmp / TOKENIZER)
        _write_json(tmp / TOKENIZER_CONFIG, _tokenizer_config(tok, family, model.config))
        _write_json(tmp / SPECIAL_TOKENS_MAP, hf_tokenizer_kwargs(family))  # type: ignore[arg-type]
    return out_dir


def load_hf_export(out_dir: Path) -> tuple[PlmModel, PlmConfig]:
    """Load an HF folder (`export_hf` output, or any `bert`/`megatron-bert`/`gpt2` safetensors checkpoint
    with plm's activations) back into a plm model; no code from the folder is ever run."""
    out_dir = Path(out_dir)
    config = json.loads((out_dir / CONFIG).read_text(encoding="utf-8"))
    model = from_hf(load_file(str(out_dir / WEIGHTS)), config)
    return model, model.config
