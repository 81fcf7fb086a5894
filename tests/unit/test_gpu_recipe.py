"""pipelines/imdb_bert_gpu.yaml runs end to end, on CPU at a reduced size, on a slice of the real reviews.

The recipe's own settings (pre-LN BERT, dynamic masking, cosine schedule, 512-token fine-tuning,
300-d document-window vectors, uncapped transfer) are kept; only sizes and step counts shrink.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from plm import stages
from plm.config import load_spec

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_recipe_at_a_reduced_size(tmp_path, imdb_slice):
    spec = load_spec(ROOT / "pipelines" / "imdb_bert_gpu.yaml", [
        f"home={tmp_path}", f"corpus.paths=[{imdb_slice / 'corpus.jsonl'}]", f"finetune.data={imdb_slice / 'labelled.jsonl'}",
        "finetune.format=jsonl", "finetune.split_column=split", "tokenizer.vocab_size=2000", "objectives.seq_len=64",
        "objectives.workers=1", "model.hidden_size=32", "model.num_layers=2", "model.num_heads=2",
        "model.intermediate_size=64", "train.steps=6", "train.warmup_steps=1", "train.batch_size=8",
        "train.checkpoint_every=3", "train.eval_batches=2", "word_vectors.epochs=1", "word_vectors.dim=16",
        "word_vectors.threads=1", "finetune.seq_len=64", "finetune.epochs=1", "finetune.train_labels=100",
        "finetune.transfer_labels=[50]", "finetune.transfer_seeds=2",
    ])  # fmt: skip
    assert spec.model.norm == "pre" and spec.objectives.masking == "dynamic" and spec.train.schedule == "cosine"
    with stages.Pipeline(spec, tracking=False) as p:
        results = {r.stage: r for r in stages.run_all(p)}
    assert {"pretrain", "word_vectors", "finetune", "transfer"} <= set(results)
    assert results["pretrain"].metrics["val_mlm_accuracy"] >= 0
    report = pd.read_csv(results["transfer"].path / "report.csv")
    assert set(report.strategy) == {"full", "features", "tfidf_lr", "tfidf_lr_cv"} and set(report.seed) == {1234, 1235}
    assert {c.family for c in results["finetune"].output.candidates} == {"bert-small", "word2vec-16d"}
