"""`JournalTracker` + `replay_journal`: what a stage records on a worker reaches the flow's tracker unchanged."""

from __future__ import annotations

from pathlib import Path

from plm.tracker import JournalTracker, NullTracker, replay_journal


class Calls(NullTracker):
    """A NullTracker that also keeps every call, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple]] = []

    def __getattribute__(self, name: str):
        attr = super().__getattribute__(name)
        if name.startswith(("log_", "set_")) and callable(attr):
            def record(*args, **kwargs):
                self.calls.append((name, tuple(args) + tuple(kwargs.values())))
                return attr(*args, **kwargs)

            return record
        return attr


def test_every_call_is_replayed_in_order_with_files_spooled(tmp_path):
    staged = tmp_path / ".tmp-stage"
    staged.mkdir()
    (staged / "report.csv").write_text("a,b\n1,2\n")
    j = JournalTracker("run-1", tmp_path / "journals" / "run-1.jsonl", tags={"plm.fingerprint": "abc"})
    assert j.run_id == "run-1"
    j.log_params({"train.steps": 4, "lr": 1e-3})
    for step in (1, 2):
        j.log_metrics({"loss": 3.0 / step}, step=step)
    j.log_artifact(staged / "report.csv", "tables")
    j.log_table({"reason": ["too_short"], "rows": [3]}, "reasons.json")
    j.log_input(tmp_path / "up", "tokenizer-fp", "d1", context="examples")
    j.log_histogram([1, 2, 2, 3], "lengths", "lengths.png")
    j.log_bars({"en": 3, "ko": 1}, "languages", "documents", "languages.png")
    j.log_curves(["loss"], "pretraining", "curves.png")
    staged.rename(tmp_path / "final")  # the stage's atomic rename: the spooled copy is what gets logged

    got = Calls()
    assert replay_journal(j.path, got) == j.path.stat().st_size
    names = [c[0] for c in got.calls]
    assert names == ["set_tags", "log_params", "log_metrics", "log_metrics", "log_artifact", "log_table", "log_input",
                     "log_histogram", "log_bars", "log_curves"]  # fmt: skip
    assert got.tags == {"plm.fingerprint": "abc"} and got.params == {"train.steps": "4", "lr": "0.001"}
    assert got.history["loss"] == [(1, 3.0), (2, 1.5)]
    spooled = Path(got.artifacts[0])
    assert spooled.read_text() == "a,b\n1,2\n" and spooled.is_relative_to(j.spool) and got.calls[4][1][1] == "tables"
    assert got.calls[6][1] == (tmp_path / "up", "tokenizer-fp", "d1", "examples")


def test_replay_resumes_from_its_offset_and_leaves_a_partial_line(tmp_path):
    j = JournalTracker("r", tmp_path / "r.jsonl")
    j.log_metrics({"a": 1.0}, step=1)
    first = Calls()
    offset = replay_journal(j.path, first)
    j.log_metrics({"a": 2.0}, step=2)
    with open(j.path, "a") as f:
        f.write('{"m": "log_metrics", "metrics": {"a": 3')  # a line still being written
    second = Calls()
    offset2 = replay_journal(j.path, second, offset)
    assert first.history["a"] == [(1, 1.0)] and second.history["a"] == [(2, 2.0)]
    with open(j.path, "a") as f:
        f.write('.0}, "step": 3}\n')
    third = Calls()
    replay_journal(j.path, third, offset2)
    assert third.history["a"] == [(3, 3.0)]
    assert replay_journal(tmp_path / "missing.jsonl", Calls(), 7) == 7
