"""fastText's unseen words in fine-tuning: the `fasttext_lee.yaml` task with and without n-gram vectors.

Trains `pipelines/fasttext_lee.yaml` up to pretrain in a fresh home (tracking off), then fits its
finetune task (`sample:polarity`, the `embeddings` strategy, vectors fixed) for finetune seeds 1-5 with
`finetune.subword_oov` true (unseen words get their n-gram vectors) and false (they stay unknown, the
word2vec rule). Prints `BENCH fasttext_oov_finetune {json}` per setting: test OOV rate, unseen rate,
accuracy per seed and mean, test size and the share of the test split's larger class (`PLM_BENCH_QUICK=1`:
one pretraining epoch, seed 1). Run (about 11 minutes on 2 shared cores):
  nice -n 10 /work/main/.venv/bin/python -m pytest -n 0 -q -s tests/benchmarks/bench_fasttext_oov_finetune.py
"""

from __future__ import annotations

import json
import os
from collections import Counter

import numpy as np

from plm.finetune.run import prepare_task

QUICK = bool(os.environ.get("PLM_BENCH_QUICK"))
SEEDS = (1,) if QUICK else (1, 2, 3, 4, 5)


def test_fasttext_oov_vectors_in_finetuning(tmp_path, fasttext_lee):
    spec, vectors_dir, tokenizer = fasttext_lee
    for subword_oov in (False, True):
        rows = []
        for seed in SEEDS:
            ft = spec.finetune.model_copy(update={"seed": seed, "subword_oov": subword_oov})
            task = prepare_task(ft, vectors_dir, tokenizer, "fasttext")
            rows.append(task.fit(list(range(len(task.train_idx))), tmp_path / f"ft{seed}{subword_oov}", True,
                                 "embeddings").metrics)  # fmt: skip
        labels = [task.data.labels[i] for i in task.test_idx]
        out = {"subword_oov": subword_oov, "test_oov_rate": rows[0]["test_oov_rate"],
               "test_unseen_rate": rows[0]["test_unseen_rate"], "accuracy": [r["test_accuracy"] for r in rows],
               "accuracy_mean": float(np.mean([r["test_accuracy"] for r in rows])), "train": len(task.train_idx),
               "test": len(task.test_idx), "majority": Counter(labels).most_common(1)[0][1] / len(labels)}  # fmt: skip
        print(f"BENCH fasttext_oov_finetune {json.dumps(out)}")
        assert (out["test_oov_rate"] == 0.0) == subword_oov or out["test_unseen_rate"] == 0.0
