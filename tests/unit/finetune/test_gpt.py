"""GPT-1 fine-tuning and GPT-2 zero-shot (plm.finetune.gpt) on a tiny decoder and a synthetic sentiment task.

The decoder is pretrained here for a few seconds on synthetic reviews that end in a verdict word, so the
zero-shot test has a language model that knows which verdict follows which review.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from plm import stages
from plm.config import FinetuneSpec, TokenizerSpec, load_spec
from plm.finetune.gpt import (
    GPTClassifierPipeline, GPTForSequenceClassification, ZeroShotScorer, collate_gpt, collate_views, encode_gpt,
    encode_plain, encode_views, finetune_gpt, pooled_features,
)  # fmt: skip
from plm.finetune.strategies import build_strategy_optimizer, depth
from plm.models.gpt import GPTConfig, GPTLMHeadModel
from plm.train.export import save_model_dir

from .conftest import stood_in_upstream, write_split_jsonl

POS = ["wonderful", "moving", "brilliant", "charming", "superb", "delightful"]
NEG = ["dull", "tedious", "clumsy", "boring", "awful", "lifeless"]
NOUNS = ["film", "movie", "story", "plot", "cast", "script"]


def _review(rng: np.random.Generator, positive: bool) -> str:
    words = POS if positive else NEG
    return f"the {rng.choice(NOUNS)} was {rng.choice(words)} and {rng.choice(words)} ."


def _rows(n: int, seed: int) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    return [(_review(rng, bool(i % 2)), "positive" if i % 2 else "negative") for i in range(n)]


def _lm_lines() -> list[str]:
    return [f"{t} verdict: {'great' if y == 'positive' else 'bad'}" for t, y in _rows(256, 2)]


@pytest.fixture(scope="module")
def gpt_tokenizer(tmp_path_factory):
    from plm.tokenizer.train import build_tokenizer

    tok, trainer = build_tokenizer(TokenizerSpec(kind="bytelevel_bpe", family="gpt", vocab_size=400))
    tok.train_from_iterator(_lm_lines(), trainer=trainer)
    path = tmp_path_factory.mktemp("gpttok") / "tokenizer.json"
    tok.save(str(path))
    return path


@pytest.fixture(scope="module")
def gpt_dir(tmp_path_factory, gpt_tokenizer):
    """A tiny decoder trained (CLM, 300 steps of 16, one thread: ~2 s) on `<review> verdict: great|bad` lines."""
    from plm.tokenizer.train import load_tokenizer

    tok = load_tokenizer(gpt_tokenizer)
    cfg = GPTConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                    max_position=48, dropout=0.0)  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: more threads only contend (module fixtures run outside _one_thread)
    torch.manual_seed(0)
    model = GPTLMHeadModel(cfg)
    ids = [[0, *e.ids] for e in tok.encode_batch(_lm_lines())]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(300):
        batch = [ids[(step * 16 + j) % len(ids)] for j in range(16)]
        x = torch.full((16, max(map(len, batch))), -100)
        for b, row in enumerate(batch):
            x[b, : len(row)] = torch.tensor(row)
        loss = model(x.clamp(min=0), labels=x)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.set_num_threads(threads)
    out = tmp_path_factory.mktemp("gpt") / "model"
    save_model_dir(model.eval(), cfg.to_dict(), out)
    return out


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny matrices: extra threads only contend (on a shared CI box they cost several-fold)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tok(path):
    from plm.tokenizer.train import load_tokenizer

    return load_tokenizer(path)


def test_input_transformations(gpt_tokenizer):
    tok = _tok(gpt_tokenizer)
    V = tok.get_vocab_size()
    [single] = encode_gpt(tok, ["the film was dull"], None, 64, V)
    assert single[0] == V and single[-1] == V + 2 and single[1:-1] == tok.encode("the film was dull").ids
    [pair] = encode_gpt(tok, ["the film was dull"], ["the plot was clumsy"], 64, V)
    a, b = tok.encode("the film was dull").ids, tok.encode("the plot was clumsy").ids
    assert pair == [V, *a, V + 1, *b, V + 2]
    long = " ".join(["boring"] * 40)
    [cut] = encode_gpt(tok, [long], ["the plot"], 12, V)
    assert len(cut) == 12 and cut[-3:] == [V + 1, *tok.encode("the plot").ids][-2:] + [V + 2]  # longer side cut


def test_head_reads_the_extract_token_and_ignores_padding(gpt_tokenizer):
    tok = _tok(gpt_tokenizer)
    cfg = GPTConfig(vocab_size=tok.get_vocab_size(), hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
                    max_position=32)  # fmt: skip
    torch.manual_seed(1)
    model = GPTForSequenceClassification(cfg, 2).eval()
    ids = encode_gpt(tok, ["the film was dull", "the film was dull and tedious and clumsy"], None, 32, cfg.vocab_size)
    alone = model(**collate_gpt(ids[:1]))["logits"]
    batched = model(**collate_gpt(ids))["logits"]
    assert torch.allclose(alone[0], batched[0], atol=1e-5)  # right padding never reaches the extract position
    other = collate_gpt([ids[0][:-1] + [cfg.vocab_size + 1]])  # a different last token: a different answer
    assert not torch.allclose(model(**other)["logits"], alone)


def test_mean_pooling_reads_the_text_tokens_only(gpt_tokenizer):
    tok = _tok(gpt_tokenizer)
    cfg = GPTConfig(vocab_size=tok.get_vocab_size(), hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
                    max_position=32)  # fmt: skip
    torch.manual_seed(1)
    model = GPTForSequenceClassification(cfg, 2, pooling="mean").eval()
    views = encode_plain(tok, ["the film was dull", "the film was dull and tedious and clumsy"], None, 32, 0)
    assert views[0] == [[0, *tok.encode("the film was dull").ids]]  # <|endoftext|> text, no task tokens
    feats = pooled_features(model, views)
    alone = pooled_features(model, views[:1])
    assert np.allclose(alone[0], feats[0], atol=1e-5)  # padding never enters the mean
    h = model.hidden(collate_views(views[:1])["input_ids"])[0]
    assert np.allclose(feats[0], h[1:].mean(0).detach().numpy(), atol=1e-5)  # positions 1 .. length-1: the text's tokens
    pair = encode_plain(tok, ["the film was dull"], ["the plot was clumsy"], 32, 0)
    pm = GPTForSequenceClassification(cfg, 2, views=2, pooling="mean").eval()
    pm.transformer.load_state_dict(model.transformer.state_dict())
    u, v = pooled_features(model, [[pair[0][0]]])[0], pooled_features(model, [[pair[0][1]]])[0]
    assert np.allclose(pooled_features(pm, pair)[0], np.concatenate([u, v, np.abs(u - v), u * v]), atol=1e-5)
    with pytest.raises(ValueError, match="pooling"):
        GPTForSequenceClassification(cfg, 2, pooling="max")


def test_lm_auxiliary_loss(gpt_tokenizer):
    tok = _tok(gpt_tokenizer)
    cfg = GPTConfig(vocab_size=tok.get_vocab_size(), hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                    max_position=32, dropout=0.0)  # fmt: skip
    torch.manual_seed(2)
    model = GPTForSequenceClassification(cfg, 2, lm_aux_weight=0.5)
    ids = encode_gpt(tok, ["the film was dull", "moving"], None, 32, cfg.vocab_size)
    out = model(**collate_gpt(ids, [0, 1]))
    assert float(out["loss"].detach()) == pytest.approx(float(out["task_loss"] + 0.5 * out["lm_loss"]), rel=1e-6)
    # the LM loss covers exactly the text tokens, the first predicted from <start> (no task tokens, no padding)
    h = model.hidden(collate_gpt(ids)["input_ids"])
    logp = model.lm_head(h).log_softmax(-1)
    terms = [-logp[b, t, row[t + 1]] for b, row in enumerate(ids) for t in range(0, len(row) - 2)]
    assert float(out["lm_loss"]) == pytest.approx(float(torch.stack(terms).mean()), rel=1e-5)
    model.lm_aux_weight = 0.0
    assert "lm_loss" not in model(**collate_gpt(ids, [0, 1]))


def test_decoder_strategies_frozen_and_discriminative(gpt_tokenizer):
    cfg = GPTConfig(vocab_size=50, hidden_size=16, num_layers=3, num_heads=2, intermediate_size=32, max_position=16)
    model = GPTForSequenceClassification(cfg, 2)
    assert depth("transformer.wte.weight", 3) == 0 and depth("transformer.h.2.attn.c_attn.weight", 3) == 3
    assert depth("transformer.ln_f.weight", 3) == 4 and depth("task_tokens.weight", 3) == 4
    build_strategy_optimizer(model, "frozen", 1e-3, 0.01, 0.8, 3)
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained == {"task_tokens.weight", "classifier.weight", "classifier.bias"}
    model = GPTForSequenceClassification(cfg, 2)
    opt = build_strategy_optimizer(model, "discriminative", 1e-3, 0.01, 0.5, 3)
    assert {g["depth"]: g["lr"] for g in opt.param_groups} == pytest.approx({4: 1e-3, 3: 5e-4, 2: 2.5e-4, 1: 1.25e-4,
                                                                            0: 6.25e-5})  # fmt: skip


def test_both_orderings_read_each_pair_twice_and_ignore_its_order(gpt_tokenizer):
    tok = _tok(gpt_tokenizer)
    V = tok.get_vocab_size()
    cfg = GPTConfig(vocab_size=V, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32, max_position=32)
    a, b = ["the film was dull", "moving"], ["the plot was clumsy and slow", "a superb cast"]
    assert encode_views(tok, a, b, 32, V) == [[x] for x in encode_gpt(tok, a, b, 32, V)]
    both = encode_views(tok, a, b, 32, V, "both")
    assert [v[0] for v in both] == encode_gpt(tok, a, b, 32, V) and [v[1] for v in both] == encode_gpt(tok, b, a, 32, V)
    assert encode_views(tok, a, None, 32, V, "both") == [[x] for x in encode_gpt(tok, a, None, 32, V)]  # no pair
    torch.manual_seed(3)
    model = GPTForSequenceClassification(cfg, 2, views=2).eval()
    ab, ba = model(**collate_views(both))["logits"], model(**collate_views(encode_views(tok, b, a, 32, V, "both")))["logits"]
    assert ab.shape == (2, 2) and torch.allclose(ab, ba, atol=1e-5)  # the order of a pair no longer matters
    one = GPTForSequenceClassification(cfg, 2).eval()
    one.load_state_dict(model.state_dict())
    x_ab, x_ba = one(**collate_views([v[:1] for v in both]))["logits"], one(**collate_views([v[1:] for v in both]))["logits"]
    assert not torch.allclose(x_ab, x_ba, atol=1e-5)  # one ordering: it does
    h = model.hidden(collate_views(both)["input_ids"])  # the head reads the sum of the two <extract> states
    lengths = collate_views(both)["lengths"]
    last = h[torch.arange(4), lengths - 1].view(2, 2, -1).sum(1)
    assert torch.allclose(model.classifier(last), ab, atol=1e-5)
    with pytest.raises(ValueError, match="same number of views"):
        collate_views([both[0], both[1][:1]])


def _data(tok, n, seed, seq_len=32):
    rows = _rows(n, seed)
    ids = encode_views(tok, [t for t, _ in rows], None, seq_len, tok.get_vocab_size())
    return ids, [int(y == "positive") for _, y in rows]


def test_finetune_from_the_decoder_learns_and_serves(tmp_path, gpt_tokenizer, gpt_dir):
    from plm.finetune.predict import TASK_FILE
    from plm.tracking import load_predictor

    tok = _tok(gpt_tokenizer)
    cfg = GPTConfig.from_dict(json.loads((gpt_dir / "config.json").read_text()))
    (tr_ids, tr_y), (te_ids, te_y) = _data(tok, 64, 3), _data(tok, 64, 4)
    ft = FinetuneSpec(epochs=1, batch_size=16, lr=1e-2, seq_len=32)
    frozen = finetune_gpt(cfg, ft, tr_ids, tr_y, te_ids, te_y, {0: "negative", 1: "positive"}, tmp_path / "f",
                          gpt_dir, "frozen")  # fmt: skip
    body, tuned = load_file(str(gpt_dir / "model.safetensors")), load_file(str(frozen.model_dir / "model.safetensors"))
    assert all(torch.equal(body[k], tuned[k]) for k in body if k.startswith("transformer."))  # frozen = unchanged
    assert not torch.equal(body["transformer.h.0.attn.c_attn.weight"], torch.zeros(1))
    full = finetune_gpt(cfg, ft.model_copy(update={"epochs": 8}), tr_ids, tr_y, te_ids, te_y,
                        {0: "negative", 1: "positive"}, tmp_path / "full", gpt_dir, "full")  # fmt: skip
    tuned = load_file(str(full.model_dir / "model.safetensors"))
    assert not torch.equal(body["transformer.h.0.attn.c_attn.weight"], tuned["transformer.h.0.attn.c_attn.weight"])
    assert full.metrics["test_accuracy"] >= 0.9, full.metrics
    (full.model_dir / TASK_FILE).write_text(json.dumps({"pair": False, "kind": "gpt_classifier"}))
    pipe = load_predictor("gpt_classifier", full.model_dir, gpt_tokenizer)
    out = pipe.predict_frame(pd.DataFrame({"text": ["the film was superb and moving .", "the plot was dull and boring ."]}))
    assert list(out.label) == ["positive", "negative"] and (out.score > 0.5).all()


def test_zero_shot_verbalisers(tmp_path, gpt_tokenizer, gpt_dir):
    from plm.train.export import load_model_dir

    lm, _ = load_model_dir(gpt_dir)
    rows = _rows(40, 5)
    texts, y = [t for t, _ in rows], np.array([int(l == "positive") for _, l in rows])
    verbal = {"negative": " bad", "positive": " great"}
    scorer = ZeroShotScorer(lm, _tok(gpt_tokenizer), "{text} verdict:", verbal, 48, False, 0)
    assert (scorer.scores(texts).argmax(1) == y).mean() >= 0.9
    wrong = ZeroShotScorer(lm, _tok(gpt_tokenizer), "{text} verdict:", {"negative": " great", "positive": " bad"},
                           48, False, 0)  # fmt: skip
    assert (wrong.scores(texts).argmax(1) == y).mean() <= 0.1  # the verbalisers, not a label order, decide
    with pytest.raises(ValueError, match="must contain"):
        ZeroShotScorer(lm, _tok(gpt_tokenizer), "no field", verbal, 48, False, 0)


def _stage_setup(tmp_path, gpt_tokenizer, gpt_dir, extra=()):
    """Overrides, tokenizer and pretrain results of a GPT pipeline over the synthetic task (upstream stood in)."""
    data = tmp_path / "sentiment.jsonl"
    with data.open("w") as f:
        for i, (t, y) in enumerate(_rows(120, 6)):
            f.write(json.dumps({"text": t, "label": y, "split": "test" if i % 4 == 0 else "train"}) + "\n")
    spec_overrides = [
        f"home={tmp_path / 'home'}", "model.arch=gpt", "tokenizer.family=gpt", "tokenizer.kind=bytelevel_bpe",
        "objectives.kinds=[clm]", f"finetune.data={data}", "finetune.format=jsonl", "finetune.split_column=split",
        "finetune.seq_len=32", "finetune.epochs=2", "finetune.batch_size=16", "finetune.lr=1e-2",
        "finetune.strategy=full", "finetune.compare_scratch=false", "finetune.zero_shot_template='{text} verdict:'",
        "finetune.verbalizers={negative: ' bad', positive: ' great'}", f"corpus.allowed_roots=[{tmp_path}]",
        "finetune.transfer_strategies=[full, frozen, zero_shot]", "finetune.transfer_labels=[20]",
        "finetune.baseline=false", *extra,
    ]  # fmt: skip
    tok_dir = tmp_path / "tok"
    tok_dir.mkdir()
    shutil.copy(gpt_tokenizer, tok_dir / "tokenizer.json")
    tok = stages.StageResult("tokenizer", "t0", tok_dir, False, 0.0)
    pre = stages.StageResult("pretrain", "p0", gpt_dir.parent, False, 0.0,
                             output=stages.pretrain.Output(model_dir=gpt_dir.name, arch="gpt-debug", kind="decoder"))
    return spec_overrides, tok, pre


def test_gpt_finetune_and_transfer_stages(tmp_path, gpt_tokenizer, gpt_dir):
    spec_overrides, tok, pre = _stage_setup(tmp_path, gpt_tokenizer, gpt_dir)
    spec = load_spec(None, spec_overrides)
    with stages.Pipeline(spec, tracking=False) as p:
        ft = stages.finetune.run(p, tok, pre)
        tr = stages.transfer.run(p, tok, pre)
    assert ft.output.kind == "gpt_classifier" and ft.output.strategy == "full"
    assert (ft.path / "model" / "task.json").is_file() or (ft.path / "pretrained" / "model" / "task.json").is_file()
    report = pd.read_csv(tr.path / "report.csv")
    acc = report[report.metric == "accuracy"]
    zs = acc[acc.strategy == "zero_shot"]
    assert len(zs) == 1 and zs.labels.item() == 0 and zs.init.item() == "pretrained" and zs.value.item() >= 0.9
    scratch = acc[acc.init == "scratch"].pivot_table(index="labels", columns="strategy", values="value")
    assert (scratch["full"] == scratch["frozen"]).all()  # one decoder scratch run per budget, shared
    assert set(acc.labels) == {0, 20} and set(acc.strategy) == {"full", "frozen", "zero_shot"}

    # zero_shot as the finetune stage's candidate: the pretrained weights unchanged, served by the same predictor
    from plm.tracking import load_predictor

    zspec = load_spec(None, [f"{o}" for o in spec_overrides] + ["finetune.strategy=zero_shot"])
    with stages.Pipeline(zspec, tracking=False) as p:
        zft = stages.finetune.run(p, tok, pre)
    assert zft.output.strategy == "zero_shot" and zft.metrics["pretrained.test_accuracy"] >= 0.9
    model_dir = zft.path / zft.output.model_dir
    assert load_file(str(model_dir / "model.safetensors")).keys() == load_file(str(gpt_dir / "model.safetensors")).keys()
    pipe = load_predictor("gpt_classifier", model_dir, model_dir / "tokenizer.json")
    out = pipe.predict_frame(pd.DataFrame({"text": ["the film was superb and moving .", "the plot was dull and boring ."]}))
    assert list(out.label) == ["positive", "negative"]


def test_features_strategy_on_the_frozen_decoder(tmp_path, gpt_tokenizer, gpt_dir, monkeypatch):
    """`features`: the decoder's mean states + a cross-validated regression, a candidate served by the GPT predictor
    with the decoder unchanged; in the transfer report its scratch twin is its own fit (a random decoder read
    once), never the shared trained-from-scratch run of `full`."""
    from plm.finetune.run import PreparedTask
    from plm.tracking import load_predictor

    spec_overrides, tok, pre = _stage_setup(tmp_path, gpt_tokenizer, gpt_dir, [
        "finetune.strategy=features", "finetune.compare_scratch=true", "finetune.transfer_strategies=[full, features]"])
    fits = []
    real_fit = PreparedTask.fit
    monkeypatch.setattr(PreparedTask, "fit", lambda self, *a, **kw: fits.append((a[3], a[2])) or real_fit(self, *a, **kw))
    with stages.Pipeline(load_spec(None, spec_overrides), tracking=False) as p:
        ft = stages.finetune.run(p, tok, pre)
        tr = stages.transfer.run(p, tok, pre)
    assert ft.output.strategy == "features" and ft.output.kind == "gpt_classifier"
    assert ft.metrics["pretrained.test_accuracy"] >= 0.9, ft.metrics
    model_dir = ft.path / ft.output.model_dir
    body, saved = load_file(str(gpt_dir / "model.safetensors")), load_file(str(model_dir / "model.safetensors"))
    assert all(torch.equal(body[k], saved[k]) for k in body if k.startswith("transformer."))  # the decoder as pretrained
    assert json.loads((model_dir / "config.json").read_text())["head"] == "mean"
    pipe = load_predictor("gpt_classifier", model_dir, model_dir / "tokenizer.json")
    out = pipe.predict_frame(pd.DataFrame({"text": ["the film was superb and moving .", "the plot was dull and boring ."]}))
    assert list(out.label) == ["positive", "negative"]
    texts = [t for t, _ in _rows(40, 9)]  # served logits = the stage's: the same encoding, pooling and folded head
    served = pipe.predict_frame(pd.DataFrame({"text": texts}))
    assert (served.label == [y for _, y in _rows(40, 9)]).mean() >= 0.9
    report = pd.read_csv(tr.path / "report.csv")
    acc = report[report.metric == "accuracy"].set_index(["strategy", "init"]).value
    assert acc["features", "pretrained"] >= 0.9
    transfer_fits = fits[2:]  # after the finetune stage's pretrained + scratch candidates
    assert ("features", False) in transfer_fits and ("full", False) in transfer_fits  # each scratch twin fitted
    # a `full` child of this candidate (same labels) takes its decoder, never its mean-state head
    from plm.tracker import NullTracker

    tok_ = _tok(gpt_tokenizer)
    cfg = GPTConfig.from_dict(json.loads((gpt_dir / "config.json").read_text()))
    (tr_ids, tr_y), tracker = _data(tok_, 16, 3), NullTracker()
    finetune_gpt(cfg, FinetuneSpec(epochs=1, batch_size=16, lr=1e-3, seq_len=32), tr_ids, tr_y, tr_ids, tr_y,
                 {0: "negative", 1: "positive"}, None, model_dir, "full", tracker)  # fmt: skip
    assert tracker.params["head"] == "new"


def test_probe_head_init_fits_the_head_then_fine_tunes(tmp_path, gpt_tokenizer, gpt_dir):
    """`head_init: probe` (LP-FT): the head starts as the cross-validated regression on the untrained decoder's
    mean states (so a near-zero learning rate keeps the probe's accuracy, where a new head would still be random),
    `full` then tunes the decoder too, and the candidate (`head: mean`) is served with the stage's logits;
    through the finetune stage, the rows are read as `<|endoftext|> text`."""
    from plm.finetune.features import fit_logistic
    from plm.finetune.gpt import features_model, gpt_logits
    from plm.finetune.predict import TASK_FILE
    from plm.tracker import NullTracker
    from plm.tracking import load_predictor

    tok = _tok(gpt_tokenizer)
    cfg = GPTConfig.from_dict(json.loads((gpt_dir / "config.json").read_text()))
    rows, test = _rows(64, 3), _rows(64, 4)
    plain = lambda rs: encode_plain(tok, [t for t, _ in rs], None, 32, 0)  # noqa: E731
    tr_ids, te_ids = plain(rows), plain(test)
    tr_y, te_y = [int(y == "positive") for _, y in rows], [int(y == "positive") for _, y in test]
    labels = {0: "negative", 1: "positive"}
    ft = FinetuneSpec(epochs=1, batch_size=16, lr=1e-9, seq_len=32, head_init="probe", lm_aux_weight=0.0)
    tracker = NullTracker()
    lp = finetune_gpt(cfg, ft, tr_ids, tr_y, te_ids, te_y, labels, tmp_path / "lp", gpt_dir, "frozen", tracker, bos=0)
    assert tracker.params["head"] == "probe" and lp.metrics["test_accuracy"] >= 0.9, lp.metrics
    expected = fit_logistic(pooled_features(features_model(cfg, 2, gpt_dir, 1234, 1), tr_ids), np.asarray(tr_y), 2, 1234)
    head = load_file(str(lp.model_dir / "model.safetensors"))["classifier.weight"].double().numpy()
    assert lp.metrics["probe_C"] == expected.C and np.allclose(head, expected.coef, atol=1e-4)
    new = finetune_gpt(cfg, ft.model_copy(update={"head_init": "new"}), _data(tok, 64, 3)[0], tr_y, _data(tok, 64, 4)[0],
                       te_y, labels, None, gpt_dir, "frozen")  # fmt: skip
    assert "probe_C" not in new.metrics

    full = finetune_gpt(cfg, ft.model_copy(update={"lr": 1e-3, "epochs": 2, "lm_aux_weight": 0.5}), tr_ids, tr_y,
                        te_ids, te_y, labels, tmp_path / "full", gpt_dir, "full", bos=0)  # fmt: skip
    body, tuned = load_file(str(gpt_dir / "model.safetensors")), load_file(str(full.model_dir / "model.safetensors"))
    assert not torch.equal(body["transformer.h.0.attn.c_attn.weight"], tuned["transformer.h.0.attn.c_attn.weight"])
    assert full.metrics["test_accuracy"] >= 0.9, full.metrics
    config = json.loads((full.model_dir / "config.json").read_text())
    assert (config["head"], config["head_init"], config["bos"]) == ("mean", "probe", 0)
    (full.model_dir / TASK_FILE).write_text(json.dumps({"pair": False, "kind": "gpt_classifier"}))
    pipe = load_predictor("gpt_classifier", full.model_dir, gpt_tokenizer)
    model = GPTForSequenceClassification(cfg, 2, pooling="mean")
    model.load_state_dict(tuned, strict=False)
    model.lm_head.weight = model.transformer.wte.weight
    assert torch.allclose(pipe.logits([t for t, _ in test], None), gpt_logits(model, te_ids, 16), atol=1e-5)
    with pytest.raises(ValueError, match="probe"):  # a regressor has no classifier head to probe
        finetune_gpt(cfg, ft, tr_ids, [float(y) for y in tr_y], te_ids, [float(y) for y in te_y], {}, None, gpt_dir,
                     "full", bos=0)  # fmt: skip

    spec_overrides, tok_r, pre = _stage_setup(tmp_path, gpt_tokenizer, gpt_dir, ["finetune.head_init=probe",
                                              "finetune.compare_scratch=true", "finetune.epochs=1"])  # fmt: skip
    with stages.Pipeline(load_spec(None, spec_overrides), tracking=False) as p:
        st = stages.finetune.run(p, tok_r, pre)
    assert st.metrics["pretrained.test_accuracy"] >= 0.9, st.metrics
    assert "scratch.test_accuracy" in st.metrics  # the scratch twin probes a random decoder, then trains
    assert json.loads((st.path / st.output.model_dir / "config.json").read_text())["head"] == "mean"


def test_probe_head_init_is_checked_in_the_spec():
    with pytest.raises(ValueError, match="head_init probe"):
        FinetuneSpec(task_type="regression", head_init="probe")
    with pytest.raises(ValueError, match="pair_orderings both"):
        FinetuneSpec(task_type="pair_classification", head_init="probe", pair_orderings="both")
    with pytest.raises(ValueError, match="head_init probe applies to a GPT decoder"):
        load_spec(None, ["finetune.head_init=probe"])  # model.arch bert


def test_finetune_init_from_a_registered_model(tmp_path, gpt_tokenizer, gpt_dir):
    """Sentiment champion -> registry -> `finetune.init` of a same-sentiment pair task: the pair candidate starts
    from the registered weights (head replaced: other labels), its version names the parent, and the
    transfer report has `registered` rows beside pretrained and scratch."""
    from mlflow import MlflowClient

    sent = write_split_jsonl(tmp_path / "sent.jsonl", [{"text": t, "label": y} for t, y in _rows(80, 7)])
    rows = _rows(160, 8)
    pairs = write_split_jsonl(tmp_path / "pairs.jsonl", [
        {"text": a, "text_pair": b, "label": "same" if ya == yb else "different"}
        for (a, ya), (b, yb) in zip(rows[0::2], rows[1::3] + rows[1::2])])  # fmt: skip
    common = [f"home={tmp_path / 'home'}", "name=t", "model.arch=gpt", "tokenizer.family=gpt",
              "tokenizer.kind=bytelevel_bpe", "objectives.kinds=[clm]", "finetune.format=jsonl",
              "finetune.split_column=split", "finetune.seq_len=40", "finetune.epochs=1", "finetune.batch_size=16",
              "finetune.lr=1e-2", "finetune.compare_scratch=false", f"corpus.allowed_roots=[{tmp_path}]"]  # fmt: skip
    tok, pre, ing = stood_in_upstream(tmp_path, gpt_tokenizer, gpt_dir, "gpt-debug", "decoder")
    tok_dir = tok.path

    def run(*extra, transfer=False):
        spec = load_spec(None, [*common, *extra])
        with stages.Pipeline(spec) as p:
            p.results.update(ingest=ing, tokenizer=tok, pretrain=pre)
            ft = stages.finetune.run(p, tok, pre)
            tr = stages.transfer.run(p, tok, pre) if transfer else None
            return ft, tr, stages.run_stage(p, "register")

    _, _, reg = run("finetune.task=sentiment", f"finetune.data={sent}")
    parent = reg.output.models["t-sentiment"].model_dump()
    client = MlflowClient(f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}")
    ft, tr, reg = run("finetune.task=samesent", "finetune.task_type=pair_classification", f"finetune.data={pairs}",
                      "finetune.init=models:/t-sentiment@champion", "finetune.transfer_strategies=[full]",
                      "finetune.transfer_labels=[20]", "finetune.baseline=false", "finetune.pair_orderings=both",
                      transfer=True)  # fmt: skip
    assert ft.output.metric == "registered.test_accuracy" and ft.inputs["init"].startswith(f"t-sentiment/{parent['version']}:")
    assert (ft.path / "registered" / "model" / "task.json").is_file()
    from plm.tracking import load_predictor

    served = ft.path / "registered" / "model"
    assert json.loads((served / "config.json").read_text())["views"] == 2  # both orderings, also when served
    pipe = load_predictor("gpt_classifier", served, tok_dir / "tokenizer.json")
    a, b = ["the film was superb .", "dull and boring ."], ["the plot was dull .", "a moving story ."]
    ab, ba = pipe.predict_frame(pd.DataFrame({"text": a, "text_pair": b})), pipe.predict_frame(
        pd.DataFrame({"text": b, "text_pair": a}))  # fmt: skip
    assert list(ab.label) == list(ba.label) and np.allclose(ab.score, ba.score, atol=1e-5)
    child = reg.output.models["t-samesent"].model_dump()
    tags = client.get_model_version("t-samesent", str(child["version"])).tags
    assert tags["plm.parent.model"] == "t-sentiment" and tags["plm.parent.version"] == str(parent["version"])
    assert tags["plm.parent.uri"] == f"models:/t-sentiment/{parent['version']}"
    report = pd.read_csv(tr.path / "report.csv")
    assert set(report.init) == {"registered", "pretrained", "scratch"}
    # the registered weights were used: the decoder of the child differs from both the pretrained one's start
    run_params = client.get_run(json.loads((ft.path / "manifest.json").read_text())["run_id"]).data.params
    assert run_params["registered.head"] == "new"  # labels same/different != negative/positive: head replaced
    with pytest.raises(Exception, match="not models:/|pattern"):
        load_spec(None, [*common, "finetune.init=runs:/abc/model"])


def test_a_head_is_kept_only_for_the_same_labels(tmp_path, gpt_tokenizer, gpt_dir):
    from plm.finetune.engine import load_head_if_same_labels

    cfg = GPTConfig.from_dict(json.loads((gpt_dir / "config.json").read_text()))
    torch.manual_seed(3)
    src = GPTForSequenceClassification(cfg, 2)
    save_model_dir(src, cfg.to_dict() | {"num_labels": 2, "id2label": {"0": "negative", "1": "positive"}}, tmp_path / "m")
    for labels, kept in (({0: "negative", 1: "positive"}, True), ({0: "different", 1: "same"}, False)):
        torch.manual_seed(4)
        dst = GPTForSequenceClassification(cfg, 2)
        assert load_head_if_same_labels(dst, tmp_path / "m", labels, ("classifier.", "task_tokens.")) is kept
        assert torch.equal(dst.classifier.weight, src.classifier.weight) is kept
        assert torch.equal(dst.task_tokens.weight, src.task_tokens.weight) is kept
