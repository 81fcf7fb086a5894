"""HTTP serving: `mlflow models serve --env-manager local` on 127.0.0.1 answers like the pyfunc and `plm predict`.

A real registered model (a pair classifier and a QA model, small and untrained: the answers only
have to agree) in a SQLite store; the server is a subprocess of this venv (so `plm` imports) with
MLFLOW_TRACKING_URI pointing at that store.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import torch

from plm.config import TokenizerSpec
from plm.finetune.heads import BertForQuestionAnswering, BertForSequenceClassification
from plm.finetune.predict import TASK_FILE, example_for
from plm.models.bert import BertConfig
from plm.tracking import TrackingSession, log_pyfunc_model, predict_texts, register_version
from plm.train.engine import save_model_dir

MLFLOW = Path(sys.executable).with_name("mlflow")
LEE = "Hundreds of people have been forced to vacate their homes in the Southern Highlands as strong winds pushed a bushfire towards Hill Top."


def _tokenizer(tmp: Path) -> Path:
    from plm.samples import resolve_sample
    from plm.tokenizer.train import _with_post_processor, build_tokenizer

    tok, trainer = build_tokenizer(TokenizerSpec(vocab_size=600, lowercase=True))
    tok.train_from_iterator(resolve_sample("sample:lee")[0].read_text(encoding="utf-8").splitlines(), trainer=trainer)
    path = tmp / "tokenizer.json"
    _with_post_processor(tok).save(str(path))
    return path


def _models(tmp: Path, vocab: int) -> dict[str, Path]:
    cfg = BertConfig(vocab_size=vocab, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_position=64)
    torch.manual_seed(0)
    pair = save_model_dir(BertForSequenceClassification(cfg, 2), cfg.to_dict() | {
        "num_labels": 2, "id2label": {"0": "different", "1": "same"}, "max_seq_len": 48}, tmp / "pair")  # fmt: skip
    (pair / TASK_FILE).write_text(json.dumps({"task_type": "pair_classification", "pair": True, "seq_len": 48}))
    qa = save_model_dir(BertForQuestionAnswering(cfg), cfg.to_dict() | {
        "task_type": "qa", "max_seq_len": 48, "doc_stride": 16, "max_query_len": 12, "max_answer_len": 8}, tmp / "qa")  # fmt: skip
    return {"pair_classifier": pair, "qa": qa}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port: int, frame: pd.DataFrame) -> list[dict]:
    body = json.dumps({"dataframe_split": frame.to_dict(orient="split", index=False)}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())["predictions"]


@pytest.mark.skipif(not MLFLOW.exists(), reason="the mlflow CLI is not in this venv")
@pytest.mark.parametrize("kind", ["pair_classifier", "qa"])
def test_served_model_answers_like_pyfunc_and_cli(kind, tmp_path):
    from tokenizers import Tokenizer

    tok = _tokenizer(tmp_path)
    model_dir = _models(tmp_path, Tokenizer.from_file(str(tok)).get_vocab_size())[kind]
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    session = TrackingSession(store, "serve", tmp_path, "serve", tags={})
    uri = log_pyfunc_model(session.start_stage("register", {}), kind, model_dir, tok, example_for(kind, model_dir, []))
    register_version(session, uri, f"serve-{kind}", {}, "m", 1.0)
    name = f"models:/serve-{kind}@champion"
    frame = (pd.DataFrame({"text": ["a bushfire near the town", "the yacht race"],
                           "text_pair": ["a fire close to the town", "strong winds today"]})
             if kind == "pair_classifier" else
             pd.DataFrame({"question": ["Which town was the bushfire pushed towards?"], "context": [LEE]}))  # fmt: skip
    expected = predict_texts(store, name, frame)

    port = _free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": store, "PATH": f"{MLFLOW.parent}:{os.environ.get('PATH', '')}"}
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [str(MLFLOW), "models", "serve", "-m", name, "--env-manager", "local", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
    )  # fmt: skip
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if server.poll() is not None or time.time() > deadline:
                    pytest.fail(f"server did not start: {(tmp_path / 'serve.log').read_text()[-3000:]}")
                time.sleep(1)
        served = _post(port, frame)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    assert len(served) == len(expected)
    for got, want in zip(served, expected, strict=True):
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert got[key] == (pytest.approx(value, abs=1e-5) if isinstance(value, float) else value), key

    # `plm predict` (the CLI in this venv) gives the same answers
    plm = shutil.which("plm", path=str(MLFLOW.parent))
    args = ["--pair", *frame.values.ravel().tolist()] if kind == "pair_classifier" else ["--qa", *frame.values.ravel().tolist()]
    out = subprocess.run([plm, "predict", name, *args, "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout.strip().splitlines()[-1])
    for got, want in zip(rows, expected, strict=True):
        for key, value in want.items():
            assert got[key] == (pytest.approx(value, abs=1e-5) if isinstance(value, float) else value), key
