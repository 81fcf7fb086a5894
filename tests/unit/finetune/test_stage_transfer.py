"""The finetune and transfer stages for QA and the word2vec `embeddings` strategy, tracked in a real MLflow store.

Upstream stages are stood in for by StageResults pointing at the test tokenizer and model folders.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from plm import stages
from plm.config import load_spec

from .conftest import PAIRS, SQUAD, write_word2vec


def _upstream(tmp_path, tokenizer_path, model_dir, arch="bert-debug"):
    tok_dir = tmp_path / "tok"
    tok_dir.mkdir()
    shutil.copy(tokenizer_path, tok_dir / "tokenizer.json")
    tok = stages.StageResult("tokenizer", "t0", tok_dir, False, 0.0)
    output = stages.pretrain.Output(model_dir=model_dir.name, arch=arch, kind="encoder")
    pre = stages.StageResult("pretrain", "p0", model_dir.parent, False, 0.0, output=output)
    return tok, pre


def test_qa_finetune_and_transfer_stages(tmp_path, tokenizer_path, bert_dir):
    spec = load_spec(None, [
        f"home={tmp_path / 'home'}", "finetune.task_type=qa", "finetune.format=squad", f"finetune.data={SQUAD}",
        "finetune.seq_len=64", "finetune.doc_stride=48", "finetune.max_query_len=12", "finetune.epochs=1",
        "finetune.batch_size=32",
        "finetune.test_fraction=0.3", "finetune.transfer_strategies=[full, frozen]", "finetune.transfer_fractions=[0.5, 1.0]",
    ])  # fmt: skip
    tok, pre = _upstream(tmp_path, tokenizer_path, bert_dir)
    with stages.Pipeline(spec, tracking=False) as p:  # nested MLflow runs cost seconds each here; tested elsewhere
        ft = stages.finetune.run(p, tok, pre)
        tr = stages.transfer.run(p, tok, pre)
    assert ft.output.kind == "qa" and ft.output.metric == "pretrained.test_f1"
    assert {"pretrained.test_exact_match", "scratch.test_f1", "gain.test_f1"} <= set(ft.metrics)
    assert ft.counts["skipped_rows"] == 2
    table = pq.read_table(ft.path / "task.parquet")
    assert table.num_rows == 30 and "task.parquet" in (ft.path / "manifest.json").read_text()
    assert (ft.path / "pretrained" / "model" / "task.json").is_file()

    report = pd.read_parquet(tr.path / "report.parquet")
    assert set(report.columns) >= {"strategy", "init", "labels", "metric", "value", "seed", "test_examples"}
    assert set(report.metric) == {"exact_match", "f1"} and set(report.strategy) == {"full", "frozen"}
    assert len(report) == 2 * 2 * 2 * 2  # strategies x inits x budgets x metrics (QA has no TF-IDF baseline)
    scratch = report[report.init == "scratch"].pivot_table(index=["labels", "metric"], columns="strategy", values="value")
    assert (scratch["full"] == scratch["frozen"]).all()  # one scratch run per fraction, shared
    assert (tr.path / "report.png").is_file() and tr.output.metric == "f1"


def test_embeddings_strategy_through_the_stages(tmp_path, tokenizer_path):
    rng = np.random.default_rng(0)
    lines = PAIRS.read_text().lower().split()
    words = sorted({w.strip('.,"') for w in lines if w.isalpha()})[:400]
    w2v = write_word2vec(tmp_path / "w2v" / "model", words, rng.normal(0, 0.5, (len(words), 8)).astype(np.float32))
    spec = load_spec(None, [
        f"home={tmp_path / 'home'}", "model.arch=word2vec", "finetune.task_type=pair_classification",
        "finetune.format=csv", f"finetune.data={PAIRS}", "finetune.text_column=sentence1",
        "finetune.text_pair_column=sentence2", "finetune.epochs=2", "finetune.strategy=embeddings",
        "finetune.transfer_strategies=[embeddings]", "finetune.transfer_fractions=[0.5, 1.0]",
    ])  # fmt: skip
    tok, pre = _upstream(tmp_path, tokenizer_path, w2v, arch="word2vec")
    with stages.Pipeline(spec, tracking=False) as p:
        ft = stages.finetune.run(p, tok, pre)
        tr = stages.transfer.run(p, tok, pre)
    assert ft.output.kind == "embeddings_classifier" and ft.output.strategy == "embeddings"
    assert {"pretrained.test_accuracy", "scratch.test_accuracy", "pretrained.test_oov_rate"} <= set(ft.metrics)
    report = pd.read_csv(tr.path / "report.csv")
    assert set(report.strategy) == {"embeddings", "tfidf_lr", "tfidf_lr_cv"}
    assert set(report.init) == {"pretrained", "scratch", "baseline"}
    assert set(report.metric) == {"accuracy", "macro_f1"} and len(report) == (2 + 2) * 2 * 2
