"""What a fastText-parented classifier's n-gram rows cost and buy when served (`finetune.subword_table`).

Trains `pipelines/fasttext_lee.yaml` up to pretrain in a fresh home (tracking off; 200k buckets x 100 dims),
then fits its finetune task (`sample:polarity`, `embeddings`, vectors fixed) for finetune seeds 1-5 with
`finetune.subword_table` float32, float16 and none. Each classifier is then served (`EmbeddingsModel`, what the
pyfunc runs) on a probe of texts whose words it has not seen: the Lee corpus lines holding at least one word
outside the classifier's table (the parent's rare words, below its min_count, never in the task). The reference is
the same classifier given those words the parent's own float32 n-gram vectors (`SubwordVectors`, what training
gives a word). Prints `BENCH fasttext_subword_table {json}` per setting: bytes of `subwords.safetensors` and the
folder, load seconds, probe texts / words outside the table, the largest probability difference to the reference
and the share of probe labels that agree with it, test accuracy per seed (in-process), and serving seconds for
the probe: the first call (every new word's n-grams hashed) and the fastest of 3 later ones (their vectors
remembered), each beside `none` in the same process (ratio of medians over seeds). `PLM_BENCH_QUICK=1`: one pretraining epoch, seed 1. Run:
  nice -n 10 /work/main/.venv/bin/python -m pytest -n 0 -q -s tests/benchmarks/bench_fasttext_subword_table.py
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from plm.finetune.embeddings import EmbeddingsModel
from plm.finetune.run import prepare_task
from plm.objectives.skipgram import split_words_batch
from plm.samples import resolve_sample
from plm.train.fasttext import SubwordVectors

QUICK = bool(os.environ.get("PLM_BENCH_QUICK"))
SEEDS = (1,) if QUICK else (1, 2, 3, 4, 5)
TABLES = ("float32", "float16", "none")


def _served(model: EmbeddingsModel, texts: list[str], repeats: int = 4) -> tuple[np.ndarray, float, float]:
    """Probabilities of `texts`, the first call's seconds (each new word's n-grams hashed) and the fastest of the
    later calls (the words' vectors remembered by the classifier's rule, `SubwordTable`)."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        probs = model.logits(texts).softmax(-1).numpy()
        times.append(time.perf_counter() - t)
    return probs, times[0], min(times[1:], default=times[0])


def test_subword_table_size_and_served_predictions(tmp_path, fasttext_lee):
    spec, vectors_dir, tokenizer = fasttext_lee
    parent = SubwordVectors(vectors_dir)
    lines = [ln for f in resolve_sample("sample:lee") for ln in f.read_text(encoding="utf-8").splitlines() if ln.strip()]
    results: dict[str, dict] = {t: {"accuracy": [], "max_prob_diff": [], "label_agreement": [], "serve_s": []}
                                for t in TABLES}  # fmt: skip
    for seed in SEEDS:
        for table in TABLES:
            ft = spec.finetune.model_copy(update={"seed": seed, "subword_table": table})
            task = prepare_task(ft, vectors_dir, tokenizer, "fasttext")
            res = task.fit(list(range(len(task.train_idx))), tmp_path / f"{table}{seed}", True, "embeddings")
            t = time.perf_counter()
            model = EmbeddingsModel(res.model_dir)
            load_s = time.perf_counter() - t
            known = model.index.index
            split = split_words_batch(lines, model.index.lowercase, model.index.word_unit)
            probe = [ln for ln, ws in zip(lines, split, strict=True) if any(w not in known for w in ws[: model.index.max_words])]
            new = {w for ws in split for w in ws[: model.index.max_words] if w not in known}
            reference = EmbeddingsModel(res.model_dir)
            reference.index.oov_vector = parent.vector  # what training gives a word: the parent's float32 rule
            ref, _, _ = _served(reference, probe, repeats=1)
            got, first_s, serve_s = _served(model, probe)
            r = results[table]
            sub = res.model_dir / "subwords.safetensors"
            r.update(subwords_bytes=sub.stat().st_size if sub.exists() else 0, probe_texts=len(probe),
                     probe_new_words=len(new), folder_bytes=sum(f.stat().st_size for f in res.model_dir.iterdir()))  # fmt: skip
            r.setdefault("load_s", []).append(load_s)
            r["accuracy"].append(res.metrics["test_accuracy"])
            r["max_prob_diff"].append(float(np.abs(got - ref).max()))
            r["label_agreement"].append(float((got.argmax(1) == ref.argmax(1)).mean()))
            r["serve_s"].append(serve_s)
            r.setdefault("serve_first_s", []).append(first_s)
    for table in TABLES:
        r = results[table]
        out = {"subword_table": table, **{k: v for k, v in r.items() if not isinstance(v, list)},
               **{k: [float(f"{x:.4g}") for x in v] for k, v in r.items() if isinstance(v, list)},
               "accuracy_mean": float(np.mean(r["accuracy"])),
               "serve_s_ratio_to_none": float(np.median(r["serve_s"]) / np.median(results["none"]["serve_s"])),
               "first_call_ratio_to_later": float(np.median(r["serve_first_s"]) / np.median(r["serve_s"]))}  # fmt: skip
        print(f"BENCH fasttext_subword_table {json.dumps(out)}")
    assert max(results["float32"]["max_prob_diff"]) < 1e-6 < max(results["none"]["max_prob_diff"])
