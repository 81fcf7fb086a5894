"""Labelled data read through the corpus readers: every bad row quarantined with its reason, nothing lost."""

from __future__ import annotations

import builtins
import gzip
import io
from collections import Counter

import pytest

from plm.config import FinetuneSpec, PipelineSpec
from plm.finetune.tasks import read_labelled
from plm.stages.finetune import report_quarantine
from plm.tracker import NullTracker

BIG = 33 * 1024 * 1024  # over the readers' default max_record_bytes (32 MiB)

CSV = (
    b"text,label\n"
    b"a good film,pos\n"       # 0 kept
    b",pos\n"                  # 1 missing_text
    b"no label,  \n"           # 2 missing_label
    b"caf\xe9 au lait,neg\n"   # 3 undecodable:utf-8 (a Latin-1 byte in a UTF-8 file)
    b"too,many,columns\n"      # 4 bad_columns
    b"\n"                      # blank: not a row
    b'"a ""quoted"", fine one",neg\n'  # 5 kept
    b"une cr\xc3\xa8me br\xc3\xbbl\xc3\xa9e,pos\n"  # 6 kept: UTF-8, so the file is UTF-8 and row 3 is bad
)
CSV_REASONS = [(1, "missing_text"), (2, "missing_label"), (3, "undecodable:utf-8"), (4, "bad_columns")]

JSONL = b"\n".join([
    b'{"text": "great", "label": "pos"}',       # 0 kept
    b'{"text": "na\xc3\xafve", "label": "pos"}',  # 1 kept: UTF-8 (in the sniffed head), so row 8 is the bad one
    b"not json",                                # 2 invalid_json
    b'{"label": "pos"}',                        # 3 missing_text (no text field)
    b'{"text": 5, "label": "pos"}',             # 4 missing_text (not a string)
    b'{"text": "no label"}',                    # 5 missing_label
    b'{"text": "blank label", "label": " "}',   # 6 missing_label
    b"[1, 2]",                                  # 7 missing_text (not an object)
    b'{"text": "caf\xe9", "label": "neg"}',     # 8 undecodable:utf-8
    b"",                                        # blank: not a row
    b'{"text": "' + b"x" * BIG + b'", "label": "neg"}',  # 9 too_large
    b'{"text": "fine", "label": "neg"}',        # 10 kept
]) + b"\n"
JSONL_REASONS = [(2, "invalid_json"), (3, "missing_text"), (4, "missing_text"), (5, "missing_label"),
                 (6, "missing_label"), (7, "missing_text"), (8, "undecodable:utf-8"), (9, "too_large")]


def _accounted(data, kept):
    assert len(data.texts) == kept and data.rows_read == len(data.texts) + len(data.quarantine)
    assert data.reasons() == dict(Counter(r.reason for r in data.quarantine))


def test_csv_bad_rows_get_their_reasons(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(CSV)
    data = read_labelled(FinetuneSpec(data=str(path), format="csv"))
    assert data.texts == ["a good film", 'a "quoted", fine one', "une crème brûlée"]
    assert data.labels == ["pos", "neg", "pos"] and data.encoding == "utf-8"
    assert [(r.position, r.reason) for r in data.quarantine] == CSV_REASONS
    _accounted(data, 3)
    assert data.rows_read == 7
    assert data.quarantine[3].excerpt == "too,many,columns\n"
    assert data.quarantine[2].excerpt.startswith("caf\\xe9 au lait")  # the bad byte shown, not replaced
    assert data.summary() == ("d.csv: 7 rows read, 3 kept, 4 quarantined "
                              "(missing_text 1, missing_label 1, undecodable:utf-8 1, bad_columns 1)")


def test_jsonl_bad_rows_get_their_reasons_gzip_too(tmp_path):
    plain, packed = tmp_path / "d.jsonl", tmp_path / "d.jsonl.gz"
    plain.write_bytes(JSONL)
    packed.write_bytes(gzip.compress(JSONL, compresslevel=1))
    for path in (plain, packed):
        data = read_labelled(FinetuneSpec(data=str(path), format="jsonl"))
        assert data.texts == ["great", "naïve", "fine"] and data.labels == ["pos", "pos", "neg"]
        assert [(r.position, r.reason) for r in data.quarantine] == JSONL_REASONS
        _accounted(data, 3)
        assert len(data.quarantine[-1].excerpt) == 200  # a too-large row's report is an excerpt


def test_gzip_csv_and_pair_and_regression_reasons(tmp_path):
    path = tmp_path / "pairs.csv.gz"
    path.write_bytes(gzip.compress(b"text,text_pair,label\na,b,0.5\nc,,1\nd,e,high\nf,g,nan\nh,i,2\n"))
    data = read_labelled(FinetuneSpec(data=str(path), format="csv", task_type="regression"))
    assert data.texts == ["a", "h"] and data.pairs == ["b", "i"] and data.labels == ["0.5", "2"]
    assert [(r.position, r.reason) for r in data.quarantine] == [(1, "missing_pair"), (2, "bad_label"), (3, "bad_label")]
    _accounted(data, 2)


def test_labelled_file_outside_the_roots_is_refused_before_it_is_opened(tmp_path, monkeypatch):
    allowed, outside = tmp_path / "allowed", tmp_path / "outside.jsonl.gz"
    allowed.mkdir()
    outside.write_bytes(gzip.compress(b'{"text": "secret", "label": "x"}\n'))
    opened: list[str] = []
    real_open = builtins.open

    def spy(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy)
    monkeypatch.setattr(io, "open", spy)
    spec = PipelineSpec.model_validate({"corpus": {"allowed_roots": [str(allowed)]},
                                        "finetune": {"data": str(outside), "format": "jsonl"}})
    with pytest.raises(PermissionError, match="finetune.data: .*outside.jsonl.gz: resolves to .* outside corpus.allowed_roots"):
        read_labelled(spec.finetune)
    assert not [f for f in opened if "outside" in f]


def test_missing_text_column_names_the_finetune_key(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("sentence,label\ngood,pos\n")
    with pytest.raises(ValueError, match=r"no column 'text' \(finetune.text_column\); columns: \['sentence', 'label'\]"):
        read_labelled(FinetuneSpec(data=str(path), format="csv"))
    path.write_text("text,y\ngood,pos\n")  # no label column: every row quarantined, the error says why
    with pytest.raises(ValueError, match=r"no labelled rows .*1 rows read, 0 kept, 1 quarantined \(missing_label 1\)"):
        read_labelled(FinetuneSpec(data=str(path), format="csv"))


class _Tables(NullTracker):
    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, dict] = {}

    def log_table(self, data, artifact_file):
        self.tables[artifact_file] = data


def test_the_stage_logs_the_quarantine_table_counts_and_one_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(CSV)
    data = read_labelled(FinetuneSpec(data=str(path), format="csv"))
    tracker, lines = _Tables(), []
    counts = report_quarantine(data, tracker, lines.append)
    table = tracker.tables["labelled_quarantine.json"]
    assert list(zip(table["position"], table["reason"])) == CSV_REASONS and len(table["excerpt"]) == 4
    assert counts == {"rows_read": 7.0, "quarantine.missing_text": 1.0, "quarantine.missing_label": 1.0,
                      "quarantine.undecodable:utf-8": 1.0, "quarantine.bad_columns": 1.0}
    assert lines == [f"finetune: {data.summary()}; rows in the run's labelled_quarantine.json"]


def test_squad_is_read_whole_through_the_same_streams(tmp_path):
    from plm.finetune.tasks import read_document

    doc = '\ufeff{"data": [{"title": "café"}]}'.encode()
    path = tmp_path / "squad.json.gz"
    path.write_bytes(gzip.compress(doc))
    assert read_document(path) == ('{"data": [{"title": "café"}]}', "utf-8-sig")
    path.write_bytes(gzip.compress(doc)[:-8])  # the gzip trailer cut off
    with pytest.raises(ValueError, match="squad.json.gz: corrupt_archive: truncated gz stream"):
        read_document(path)
