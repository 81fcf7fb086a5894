import pytest

from plm.config import PipelineSpec, SpecError, field_docs, load_spec


def test_defaults_are_complete_and_documented():
    spec = load_spec(None)
    assert spec.model.dims() == {"hidden_size": 256, "num_layers": 4, "num_heads": 4, "intermediate_size": 1024}
    for key, _, doc in field_docs():
        assert doc, f"{key} has no docstring"


def test_precedence_overrides_beat_yaml(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("train:\n  steps: 50\n  lr: 0.001\n")
    spec = load_spec(path, ["train.steps=7", "train.warmup_steps=2", "corpus.paths=[a.txt, dir/]", "model.size=debug"])
    assert spec.train.steps == 7 and spec.train.lr == 0.001
    assert spec.corpus.paths == ["a.txt", "dir/"]
    assert spec.model.dims()["hidden_size"] == 64


def test_required_keys_exist():
    spec = PipelineSpec()
    for key in ("corpus.paths", "tokenizer.kind", "tokenizer.vocab_size", "model.arch", "model.size", "train.steps", "train.seed"):
        node = spec
        for part in key.split("."):
            node = getattr(node, part)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.stepz=3", "unknown key 'train.stepz'"),
        ("nope=1", "unknown key 'nope'"),
        ("train.steps=many", "train.steps"),
        ("train.warmup_steps=500", "train.warmup_steps must be < train.steps"),
        ("model.size=huge", "model.size"),
        ("train.steps.x=1", "has no sub-keys"),
        ("trainsteps", "key=value"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(SpecError, match=message.replace(".", r"\.").replace("(", r"\(")):
        load_spec(None, [override])


def test_yaml_unknown_key_is_rejected(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("tokenizer:\n  vocab: 100\n")
    with pytest.raises(SpecError, match=r"tokenizer\.vocab"):
        load_spec(path)


def test_missing_file(tmp_path):
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "missing.yaml")


def test_home_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("PLM_HOME", str(tmp_path / "h"))
    assert load_spec(None).home_dir() == tmp_path / "h"
    assert load_spec(None, [f"home={tmp_path / 'x'}"]).home_dir() == tmp_path / "x"


def test_quickstart_spec_is_valid():
    spec = load_spec("pipelines/quickstart.yaml")
    assert spec.name == "quickstart" and spec.tokenizer.lowercase


def test_every_shipped_pipeline_spec_is_valid():
    from pathlib import Path

    specs = sorted((Path(__file__).resolve().parents[3] / "pipelines").glob("*.yaml"))
    assert len(specs) >= 10
    for path in specs:
        assert load_spec(str(path)).name, path
    gpt = load_spec(str(specs[0].parent / "imdb_gpt.yaml")).finetune
    assert gpt.strategy == "full" and {"full", "frozen", "discriminative", "features", "zero_shot"} <= set(gpt.transfer_strategies)


def test_model_arch_selects_the_family_and_keys_are_checked_per_family():
    assert load_spec(None).model.arch == "bert"
    gpt = load_spec(None, ["model.arch=gpt", "model.size=debug"])
    assert gpt.model.arch == "gpt" and gpt.model.dims()["hidden_size"] == 64
    w2v = load_spec(None, ["model.arch=word2vec", "model.dim=50"])
    assert w2v.model.arch == "word2vec" and w2v.model.dim == 50
    assert [s.model.label() for s in (load_spec(None), gpt, w2v)] == ["bert-small", "gpt-debug", "word2vec-50d"]
    with pytest.raises(SpecError, match=r"^model\.dim"):
        load_spec(None, ["model.dim=50"])  # a word2vec key on the default (bert) family
    with pytest.raises(SpecError, match="unknown key 'model.bogus'"):
        load_spec(None, ["model.bogus=1"])


def test_runner_section_is_no_part_of_any_fingerprint():
    from plm.config import output_slice

    spec = load_spec(None, ["runner.kind=dask", "runner.workers=4", "runner.address=tcp://127.0.0.1:8786"])
    plain = load_spec(None, [])
    assert all(output_slice(getattr(spec, s)) == output_slice(getattr(plain, s))
               for s in ("corpus", "tokenizer", "objectives", "model", "train", "finetune"))
    with pytest.raises(SpecError, match="runner.kind=dask"):
        load_spec(None, ["runner.address=tcp://127.0.0.1:8786"])
