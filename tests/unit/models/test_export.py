"""HF export: `transformers` loads the folder unchanged and its logits match plm's (<= 1e-4 on CPU);
plm -> HF -> plm round trips; the tokenizer encodes identically; plm's own folder for both archs."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from plm.config import TokenizerSpec
from plm.models.bert import BertConfig, BertForPreTraining
from plm.models.export import config_from_hf, from_hf, hf_config, to_hf
from plm.models.gpt import GPTConfig, GPTLMHeadModel
from plm.tokenizer.train import train_tokenizer
from plm.train.export import export_hf, load_hf_export, load_model_dir, save_model_dir

transformers = pytest.importorskip("transformers")

TOL = 1e-4
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "A language model learns from raw text.",
    "대한민국은 민주공화국이다.",
    "모든 국민은 법 앞에 평등하다.",
    "Tokenizers split words into pieces, and pieces into bytes.",
]
PROBE = ["The lazy fox learns.", "국민은 평등하다, and text is raw!", "unseen wordsmithery"]


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    """A WordPiece (bert family) and a byte-level BPE (gpt family) tokenizer trained on a tiny lake."""
    root = tmp_path_factory.mktemp("tok")
    rows = [{"doc_id": f"{i:04x}", "lang": "en", "sentences": [TEXTS[(i + k) % len(TEXTS)] for k in range(3)],
             "split": "train"} for i in range(40)]  # fmt: skip
    lake = root / "lake.parquet"
    pq.write_table(pa.Table.from_pylist(rows), lake)
    out = {}
    for family, kind in (("bert", "wordpiece"), ("gpt", "bytelevel_bpe")):
        path = root / f"{family}.json"
        train_tokenizer(TokenizerSpec(kind=kind, family=family, vocab_size=300, min_frequency=1), [lake], path)
        out[family] = path
    return out


def _bert(norm: str = "post", vocab: int = 300) -> BertForPreTraining:
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=vocab, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=256,
                     max_position=64, norm=norm)  # fmt: skip
    return _perturbed(BertForPreTraining(cfg))


def _gpt(vocab: int = 300) -> GPTLMHeadModel:
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=vocab, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=256, max_position=64)
    return _perturbed(GPTLMHeadModel(cfg))


def _perturbed(model):
    """Random LayerNorm gains/biases and output biases, as after training: init's 1/0 values would hide a
    swapped or transposed parameter."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def _hf_tokenizer(out_dir):
    return transformers.AutoTokenizer.from_pretrained(str(out_dir))


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_bert_export_logits_match_transformers(norm, tokenizers, tmp_path):
    model = _bert(norm)
    out = export_hf(model, tokenizers["bert"], tmp_path / "hf", "bert")
    cls = transformers.BertForPreTraining if norm == "post" else transformers.MegatronBertForPreTraining
    hf = cls.from_pretrained(str(out)).eval()
    auto = transformers.AutoModelForPreTraining.from_pretrained(str(out)).eval()
    assert type(auto) is cls
    assert hf.cls.predictions.decoder.weight.data_ptr() == hf.bert.embeddings.word_embeddings.weight.data_ptr()

    # a padded pair batch from the exported tokenizer: token types and attention mask both matter
    batch = _hf_tokenizer(out)(PROBE, PROBE[::-1], padding=True, return_tensors="pt")
    assert int((batch["attention_mask"] == 0).sum()) > 0 and int(batch["token_type_ids"].sum()) > 0
    with torch.no_grad():
        ours = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
        theirs = hf(**batch)
    real = batch["attention_mask"].bool()
    assert (ours["prediction_logits"] - theirs.prediction_logits)[real].abs().max() <= TOL
    assert (ours["seq_relationship_logits"] - theirs.seq_relationship_logits).abs().max() <= TOL
    with torch.no_grad():
        torch.testing.assert_close(auto(**batch).prediction_logits, theirs.prediction_logits)


def test_gpt_export_logits_match_transformers_with_padding_and_generation(tokenizers, tmp_path):
    model = _gpt()
    out = export_hf(model, tokenizers["gpt"], tmp_path / "hf", "gpt")
    hf = transformers.GPT2LMHeadModel.from_pretrained(str(out)).eval()
    assert type(transformers.AutoModelForCausalLM.from_pretrained(str(out))) is transformers.GPT2LMHeadModel
    assert hf.lm_head.weight.data_ptr() == hf.transformer.wte.weight.data_ptr()

    tok = _hf_tokenizer(out)
    batch = tok(PROBE, padding=True, return_tensors="pt")  # right padding; no token_type_ids for GPT
    assert set(batch) == {"input_ids", "attention_mask"} and int((batch["attention_mask"] == 0).sum()) > 0
    with torch.no_grad():
        ours = model(batch["input_ids"])["logits"]
        theirs = hf(**batch).logits
    real = batch["attention_mask"].bool()
    assert (ours - theirs)[real].abs().max() <= TOL

    # greedy continuation: HF generate (reading generation_config.json) == plm's argmax loop
    prompt = tok(PROBE[:1], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        generated = hf.generate(prompt, max_new_tokens=5, do_sample=False, min_new_tokens=5)
        ids = prompt
        for _ in range(5):
            ids = torch.cat([ids, model(ids)["logits"][:, -1:].argmax(-1)], 1)
    assert torch.equal(generated, ids)
    assert hf.generation_config.eos_token_id == tok.eos_token_id == 0


@pytest.mark.parametrize("arch", ["bert-post", "bert-pre", "gpt"])
def test_round_trip_plm_hf_plm_is_exact(arch, tokenizers, tmp_path):
    model = _gpt() if arch == "gpt" else _bert(arch.split("-")[1])
    family = "gpt" if arch == "gpt" else "bert"
    out = export_hf(model, tokenizers[family], tmp_path / "hf", family)
    back, cfg = load_hf_export(out)
    assert cfg == model.config and type(back) is type(model)
    a, b = model.state_dict(), back.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    if arch == "gpt":
        assert back.lm_head.weight is back.transformer.wte.weight
    else:
        assert back.cls.predictions.decoder.weight is back.bert.embeddings.word_embeddings.weight


@pytest.mark.parametrize("arch", ["bert", "megatron-bert", "gpt2"])
def test_from_hf_loads_a_transformers_model(arch):
    """HF -> plm with weights HF initialised (independent of `to_hf`)."""
    torch.manual_seed(3)
    if arch == "gpt2":
        hf_cfg = transformers.GPT2Config(vocab_size=80, n_embd=32, n_layer=2, n_head=4, n_positions=32, bos_token_id=0,
                                         eos_token_id=0)  # fmt: skip
        hf = transformers.GPT2LMHeadModel(hf_cfg).eval()
    else:
        cls_cfg, cls = {
            "bert": (transformers.BertConfig, transformers.BertForPreTraining),
            "megatron-bert": (transformers.MegatronBertConfig, transformers.MegatronBertForPreTraining),
        }[arch]
        hf = cls(cls_cfg(vocab_size=80, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=64, max_position_embeddings=32)).eval()  # fmt: skip
    hf = _perturbed(hf)
    model = from_hf(hf.state_dict(), hf.config.to_dict()).eval()
    ids = torch.randint(1, 80, (2, 9))
    with torch.no_grad():
        if arch == "gpt2":
            assert (model(ids)["logits"] - hf(ids).logits).abs().max() <= TOL
        else:
            ours, theirs = model(ids), hf(ids)
            assert (ours["prediction_logits"] - theirs.prediction_logits).abs().max() <= TOL
            assert (ours["seq_relationship_logits"] - theirs.seq_relationship_logits).abs().max() <= TOL


def test_hf_config_round_trips_plm_configs():
    for cfg in (_bert("post").config, _bert("pre").config, _gpt().config,
                GPTConfig(vocab_size=9, hidden_size=8, num_layers=1, num_heads=2, intermediate_size=16, attention_dropout=0.0)):  # fmt: skip
        assert config_from_hf(hf_config(cfg)) == cfg
    with pytest.raises(ValueError, match="model_type"):
        config_from_hf({"model_type": "llama"})
    with pytest.raises(ValueError, match="gelu"):
        config_from_hf(hf_config(_bert().config) | {"hidden_act": "relu"})


@pytest.mark.parametrize("family", ["bert", "gpt"])
def test_exported_tokenizer_encodes_identically(family, tokenizers, tmp_path):
    from tokenizers import Tokenizer

    from plm.tokenizer.specials import SpecialIds

    model = _gpt() if family == "gpt" else _bert()
    out = export_hf(model, tokenizers[family], tmp_path / "hf", family)
    raw = Tokenizer.from_file(str(tokenizers[family]))
    ids = SpecialIds.from_tokenizer(raw)
    for hf in (transformers.AutoTokenizer.from_pretrained(str(out)),
               transformers.PreTrainedTokenizerFast.from_pretrained(str(out))):  # fmt: skip
        assert hf(PROBE)["input_ids"] == [e.ids for e in raw.encode_batch(PROBE)]
        assert hf(PROBE, add_special_tokens=False)["input_ids"] == [
            e.ids for e in raw.encode_batch(PROBE, add_special_tokens=False)
        ]
        assert (hf.pad_token_id, hf.unk_token_id, hf.mask_token_id) == (ids.pad, ids.unk, ids.mask)
        assert hf.model_max_length == model.config.max_position
        if family == "bert":
            assert (hf.cls_token_id, hf.sep_token_id) == (ids.cls, ids.sep)
        else:
            assert hf.eos_token_id == hf.bos_token_id == ids.eos
    files = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} <= files
    assert ("generation_config.json" in files) == (family == "gpt")
    assert (out / "tokenizer.json").read_bytes() == tokenizers[family].read_bytes()


def test_export_refuses_mismatched_tokenizer(tokenizers, tmp_path):
    with pytest.raises(ValueError, match="family"):
        export_hf(_bert(), tokenizers["gpt"], tmp_path / "a", "bert")
    with pytest.raises(ValueError, match="vocab"):
        export_hf(_bert(vocab=100), tokenizers["bert"], tmp_path / "b", "bert")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_model_dir_round_trip_for_both_archs(tmp_path):
    from safetensors.torch import load_file

    for model in (_bert("pre"), _gpt()):
        path = save_model_dir(model, model.config.to_dict(), tmp_path / type(model).__name__)
        config = json.loads((path / "config.json").read_text())
        assert config["arch"] == ("gpt" if isinstance(model, GPTLMHeadModel) else "bert")
        stored = load_file(str(path / "model.safetensors"))
        assert "lm_head.weight" not in stored and "cls.predictions.decoder.weight" not in stored  # tied: once
        back, cfg = load_model_dir(path)
        assert cfg == model.config and type(back) is type(model)
        assert all(torch.equal(v, back.state_dict()[k]) for k, v in model.state_dict().items())


def test_model_dir_without_arch_is_bert_and_engine_loader_still_reads_it(tmp_path):
    from plm.train.engine import load_pretrained

    model = _bert()
    path = save_model_dir(model, model.config.to_dict(), tmp_path / "old")
    old = json.loads((path / "config.json").read_text())
    del old["arch"], old["norm"]  # a folder written before GPT and pre-LN existed
    (path / "config.json").write_text(json.dumps(old))
    back, cfg = load_model_dir(path)
    assert isinstance(back, BertForPreTraining) and cfg == model.config
    ours = save_model_dir(model, model.config.to_dict(), tmp_path / "new")
    again, _ = load_pretrained(ours)  # finetune's loader reads the new folder too
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())
    (path / "config.json").write_text(json.dumps(model.config.to_dict() | {"arch": "word2vec"}))
    with pytest.raises(ValueError, match="arch"):
        load_model_dir(path)


def test_to_hf_keys_equal_transformers_state_dict():
    for model, cls, cfg_cls in ((_bert("post"), transformers.BertForPreTraining, transformers.BertConfig),
                                (_bert("pre"), transformers.MegatronBertForPreTraining, transformers.MegatronBertConfig),
                                (_gpt(), transformers.GPT2LMHeadModel, transformers.GPT2Config)):  # fmt: skip
        sd, config = to_hf(model)
        hf = cls(cfg_cls(**{k: v for k, v in config.items() if k not in ("architectures", "model_type")}))
        hf.load_state_dict(sd, strict=True)  # every key, every shape
