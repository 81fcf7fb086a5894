"""Extractive QA: SQuAD reading, sliding windows, span choice across windows, SQuAD metrics, training."""

from __future__ import annotations

import json

import numpy as np
import pytest

from plm.config import FinetuneSpec
from plm.finetune.heads import BertForQuestionAnswering
from plm.finetune.qa import (
    QAExample, QuestionAnswerer, Window, best_spans, finetune_qa, make_windows, normalize_answer, read_squad,
    split_by_context, squad_metrics,
)  # fmt: skip
from plm.tokenizer.train import load_tokenizer
from plm.train.engine import load_pretrained

from .conftest import SQUAD, lee_lines

QA = FinetuneSpec(task_type="qa", format="squad", data=str(SQUAD), seq_len=48, doc_stride=16, max_query_len=12,
                  max_answer_len=8, epochs=1, batch_size=16, lr=1e-3, seed=3)  # fmt: skip


def test_read_squad_counts_unusable_questions():
    data = read_squad(QA)
    assert len(data.examples) == 30 and data.skipped == 2  # a wrong answer_start and an empty answer list
    ex = data.examples[0]
    text, start = ex.answers[0]
    assert ex.context[start : start + len(text)] == text
    train, test = split_by_context(data.examples, 0.3)
    assert sorted(train + test) == list(range(30))
    contexts = {data.examples[i].context for i in test}
    assert not contexts & {data.examples[i].context for i in train}  # no paragraph on both sides


def test_squad_json_errors_are_clear(tmp_path):
    bad = tmp_path / "q.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_squad(QA.model_copy(update={"data": str(bad)}))
    bad.write_text(json.dumps({"data": []}))
    with pytest.raises(ValueError, match="no answerable questions"):
        read_squad(QA.model_copy(update={"data": str(bad)}))


def test_long_context_answer_lands_in_a_later_window(tokenizer_path):
    tok = load_tokenizer(tokenizer_path)
    context = lee_lines()[0]  # ~170 tokens: several 48-token windows
    answer = "Mittagong"
    ex = QAExample("x", "Where did the residents go?", context, [(answer, context.index(answer))])
    windows = make_windows(tok, [ex], QA).windows
    assert len(windows) >= 3
    assert all(len(w.ids) <= QA.seq_len and len(w.ids) == len(w.type_ids) == len(w.offsets) for w in windows)
    labelled = [i for i, w in enumerate(windows) if w.start]
    assert labelled and labelled[0] >= 1  # not in the first window
    for i in labelled:
        w = windows[i]
        assert context[w.offsets[w.start][0] : w.offsets[w.end][1]] == answer
        assert w.type_ids[w.start] == 1 and w.start <= w.end
    assert all(w.start == w.end == 0 for i, w in enumerate(windows) if i not in labelled)  # [CLS] = not here
    # consecutive windows start doc_stride context tokens apart
    firsts = [next(o for o in w.offsets if o is not None)[0] for w in windows]
    assert firsts == sorted(firsts) and len(set(firsts)) == len(firsts)


def test_best_span_is_chosen_across_windows():
    ctx = "alpha beta gamma delta"
    ex = QAExample("x", "q", ctx, [("gamma", 11)])
    offs = [None, None, (0, 5), (6, 10), None]
    w1 = Window(0, [0] * 5, [0] * 5, offs)
    w2 = Window(0, [0] * 5, [0] * 5, [None, None, (6, 10), (11, 16), None])
    low = (np.array([0, 0, 1.0, 0, 0]), np.array([0, 0, 1.0, 0, 0]))
    high = (np.array([9.0, 0, 0, 3.0, 0]), np.array([9.0, 0, 0, 3.0, 0]))  # [CLS] scores highest but is never an answer
    (answer, score, start, end), = best_spans([ex], [w1, w2], [low, high], max_answer_len=4)
    assert (answer, score, start, end) == ("gamma", 6.0, 11, 16)
    # an end before its start, or a span over max_answer_len, is never chosen
    back = (np.array([0, 0, 0, 5.0, 0]), np.array([0, 0, 5.0, 0, 0]))
    (answer, *_), = best_spans([ex], [w2], [back], max_answer_len=1)
    assert answer in ("beta", "gamma")


def test_squad_normalisation_and_metrics():
    assert normalize_answer("The  Hume Highway!") == "hume highway"
    m = squad_metrics(["the Hume Highway", "Hume", "Goulburn"], [["Hume Highway"], ["the Hume Highway"], ["Sydney"]])
    assert m["test_exact_match"] == pytest.approx(1 / 3)
    assert m["test_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)


def synthetic(n: int, seed: int) -> list[QAExample]:
    """Long Lee contexts with the word `zebra` inserted late: the span head must find it past window 1."""
    rng = np.random.default_rng(seed)
    lines = [ln for ln in lee_lines() if len(ln) > 600]
    out = []
    for i in range(n):
        words = lines[int(rng.integers(len(lines)))].split()[:56]
        k = int(rng.integers(36, 54))
        ctx = " ".join(words[:k] + ["zebra"] + words[k:])
        out.append(QAExample(f"s{i}", "what is the codeword", ctx, [("zebra", ctx.index(" zebra") + 1)]))
    return out


def test_qa_learns_a_span_found_in_a_later_window(tokenizer_path, bert_dir, tmp_path):
    _, cfg = load_pretrained(bert_dir)
    tok = load_tokenizer(tokenizer_path)
    train, test = synthetic(32, 0), synthetic(8, 1)
    assert all(not make_windows(tok, [ex], QA).windows[0].start for ex in test)  # never in the first window
    ft = QA.model_copy(update={"epochs": 5})
    res = finetune_qa(cfg, ft, tok, train, test, tmp_path, bert_dir, strategy="full")
    assert res.metrics["test_exact_match"] >= 0.75, res.metrics
    qa = QuestionAnswerer.load(res.model_dir, tokenizer_path)
    (answer, _, start, end), = qa.answer([test[0].question], [test[0].context])
    assert answer == "zebra" and test[0].context[start:end] == "zebra"
    assert set(BertForQuestionAnswering(cfg).state_dict()) == set(qa.model.state_dict())


def test_qa_on_the_lee_squad_set_with_a_frozen_encoder(tokenizer_path, bert_dir, tmp_path):
    data = read_squad(QA)
    tok = load_tokenizer(tokenizer_path)
    _, cfg = load_pretrained(bert_dir)
    train, test = split_by_context(data.examples, 0.3)
    ft = QA.model_copy(update={"seq_len": 64, "doc_stride": 48})
    res = finetune_qa(cfg, ft, tok, [data.examples[i] for i in train][:8], [data.examples[i] for i in test],
                      tmp_path, bert_dir, strategy="frozen")  # fmt: skip
    assert 0 <= res.metrics["test_exact_match"] <= res.metrics["test_f1"] <= 1
    pre, _ = load_pretrained(bert_dir)
    from safetensors.torch import load_file

    tuned = load_file(str(res.model_dir / "model.safetensors"))
    assert all((tuned[k] == v).all() for k, v in pre.bert.state_dict().items() for k in [f"bert.{k}"])
