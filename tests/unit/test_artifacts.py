import json
import os

import pytest

from plm.artifacts import fingerprint, load_ref, lookup, write_stage


def test_fingerprint_depends_on_everything():
    base = fingerprint("s", 1, {"a": 1}, {"up": "x"})
    assert base == fingerprint("s", 1, {"a": 1}, {"up": "x"})
    assert len({base, fingerprint("t", 1, {"a": 1}, {"up": "x"}), fingerprint("s", 2, {"a": 1}, {"up": "x"}),
                fingerprint("s", 1, {"a": 2}, {"up": "x"}), fingerprint("s", 1, {"a": 1}, {"up": "y"})}) == 5


def test_write_stage_is_atomic_and_records_files(tmp_path):
    assert lookup(tmp_path, "stage", "fp1") is None
    with write_stage(tmp_path, "stage", "fp1", {"k": 1}, {"up": "u"}) as w:
        (w.path / "out.txt").write_text("hello")
        assert lookup(tmp_path, "stage", "fp1") is None  # not visible before the manifest
        w.extra["counts"] = {"rows": 1}
    ref = lookup(tmp_path, "stage", "fp1")
    assert ref is not None and ref.file("out.txt").read_text() == "hello"
    assert ref.manifest["counts"] == {"rows": 1} and "out.txt" in ref.manifest["files"]
    assert load_ref(ref.path).fingerprint == "fp1"
    assert not list((tmp_path / "artifacts" / "stage").glob(".tmp-*"))


def test_failed_stage_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), write_stage(tmp_path, "stage", "fp2", {}, {}) as w:
        (w.path / "partial").write_text("x")
        raise RuntimeError("boom")
    assert lookup(tmp_path, "stage", "fp2") is None
    assert not list((tmp_path / "artifacts" / "stage").iterdir())


def test_stale_temp_dir_from_a_dead_process_is_removed(tmp_path):
    stale = tmp_path / "artifacts" / "stage" / ".tmp-fp3-999999999"
    stale.mkdir(parents=True)
    with write_stage(tmp_path, "stage", "fp3", {}, {}) as w:
        (w.path / "a").write_text("1")
    assert not stale.exists()
    assert json.loads((tmp_path / "artifacts/stage/fp3/manifest.json").read_text())["fingerprint"] == "fp3"
    assert os.path.isdir(tmp_path / "artifacts/stage/fp3")


def test_resumable_stage_keeps_parts_after_interrupt_but_not_after_failure(tmp_path):
    with pytest.raises(KeyboardInterrupt), write_stage(tmp_path, "s", "fp4", {}, {}, resumable=True) as w:
        (w.path / "part-0").write_text("done")
        raise KeyboardInterrupt
    with write_stage(tmp_path, "s", "fp4", {}, {}, resumable=True) as w:
        assert (w.path / "part-0").read_text() == "done"  # the next attempt sees the finished part
        (w.path / "part-1").write_text("done")
    assert lookup(tmp_path, "s", "fp4").manifest["files"].keys() == {"part-0", "part-1"}

    with pytest.raises(ValueError), write_stage(tmp_path, "s", "fp5", {}, {}, resumable=True) as w:
        (w.path / "part-0").write_text("x")
        raise ValueError("gate failed")
    assert not (tmp_path / "artifacts" / "s" / ".partial-fp5").exists()


def test_resumable_stage_refuses_a_concurrent_writer(tmp_path):
    with write_stage(tmp_path, "s", "fp6", {}, {}, resumable=True):
        with pytest.raises(RuntimeError, match="being written by pid"), write_stage(tmp_path, "s", "fp6", {}, {}, resumable=True):
            pass
