"""The `Tracker` protocol library code records through, its no-op implementation, and progress callbacks.

Stdlib only, so every layer may use it; the MLflow implementation lives in `plm.tracking`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

Progress = Callable[[str, int, int | None], None]
"""progress(what, done, total): library code reports long work through this; total may be unknown."""


def no_progress(what: str, done: int, total: int | None) -> None:
    """The default progress callback: report nothing."""


class Tracker(Protocol):
    """What library code may record about a run. Implementations: NullTracker, MlflowTracker, Prefixed.

    Callers never probe which one they hold: every method exists on every implementation (figures and
    tables are drawn at the tracking edge, `plm.tracking`, and are no-ops in `NullTracker`).
    """

    @property
    def run_id(self) -> str | None: ...

    def log_params(self, params: dict[str, Any]) -> None: ...

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...

    def set_tags(self, tags: dict[str, str]) -> None: ...

    def log_table(self, data: dict[str, list[Any]], artifact_file: str) -> None: ...

    def log_input(self, path: Path, name: str, digest: str, context: str) -> None: ...

    def log_curves(self, keys: list[str], title: str, file_name: str) -> None: ...

    def log_histogram(self, values: list[int], title: str, file_name: str) -> None: ...

    def log_bars(self, counts: dict[str, int], title: str, ylabel: str, file_name: str) -> None: ...


class NullTracker:
    """Records nothing; keeps the last value of each metric so callers and tests can read them."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self.metrics: dict[str, float] = {}
        self.history: dict[str, list[tuple[int | None, float]]] = {}
        self.tags: dict[str, str] = {}
        self.artifacts: list[str] = []

    def log_params(self, params: dict[str, Any]) -> None:
        self.params.update(params)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        for key, value in metrics.items():
            self.metrics[key] = float(value)
            self.history.setdefault(key, []).append((step, float(value)))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.artifacts.append(str(path))

    def set_tags(self, tags: dict[str, str]) -> None:
        self.tags.update(tags)

    @property
    def run_id(self) -> str | None:
        return None

    def log_table(self, data: dict[str, list[Any]], artifact_file: str) -> None:
        """No run to attach a table to."""

    def log_input(self, path: Path, name: str, digest: str, context: str) -> None:
        """No run to record lineage in."""

    def log_curves(self, keys: list[str], title: str, file_name: str) -> None:
        """Nothing is plotted without a tracking run."""

    def log_histogram(self, values: list[int], title: str, file_name: str) -> None:
        """Nothing is plotted without a tracking run."""

    def log_bars(self, counts: dict[str, int], title: str, ylabel: str, file_name: str) -> None:
        """Nothing is plotted without a tracking run."""


class Prefixed:
    """A tracker view that prefixes metric and parameter names (`pretrained.*` vs `scratch.*` in one stage run)."""

    def __init__(self, inner: Tracker, prefix: str) -> None:
        self.inner, self.prefix = inner, prefix

    @property
    def run_id(self) -> str | None:
        return self.inner.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        self.inner.log_params({self.prefix + k: v for k, v in params.items()})

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.inner.log_metrics({self.prefix + k: v for k, v in metrics.items()}, step)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.inner.log_artifact(path, artifact_path)

    def set_tags(self, tags: dict[str, str]) -> None:
        self.inner.set_tags(tags)

    def log_table(self, data: dict[str, list[Any]], artifact_file: str) -> None:
        self.inner.log_table(data, artifact_file)

    def log_input(self, path: Path, name: str, digest: str, context: str) -> None:
        self.inner.log_input(path, name, digest, context)

    def log_curves(self, keys: list[str], title: str, file_name: str) -> None:
        self.inner.log_curves([self.prefix + k for k in keys], title, file_name)

    def log_histogram(self, values: list[int], title: str, file_name: str) -> None:
        self.inner.log_histogram(values, title, file_name)

    def log_bars(self, counts: dict[str, int], title: str, ylabel: str, file_name: str) -> None:
        self.inner.log_bars(counts, title, ylabel, file_name)




class JournalTracker:
    """A stage's tracker where the process running it must not write to MLflow (a Prefect task on a Dask
    worker): every call becomes one JSON line in `path`, and a logged file is first copied beside it, so
    that the flow process, which alone writes to MLflow, replays the journal into the stage's run while
    the stage runs (`replay_journal`) and after it ends. `run_id` is that run's, created by the flow."""

    def __init__(self, run_id: str, path: Path, tags: dict[str, str] | None = None) -> None:
        self._run_id = run_id
        self.path = path
        self.spool = path.with_suffix(".files")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._n = 0
        if tags:
            self.set_tags(tags)

    @property
    def run_id(self) -> str | None:
        return self._run_id

    def _write(self, method: str, **kwargs: Any) -> None:
        line = json.dumps({"m": method, **kwargs}, ensure_ascii=False, default=str)
        with open(self.path, "a", encoding="utf-8") as f:  # one whole line per write: a reader never sees half
            f.write(line + "\n")

    def log_params(self, params: dict[str, Any]) -> None:
        self._write("log_params", params={k: str(v) for k, v in params.items()})

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self._write("log_metrics", metrics={k: float(v) for k, v in metrics.items()}, step=step)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        import shutil

        self._n += 1
        dest = self.spool / str(self._n) / Path(path).name  # the stage's own copy may move (its atomic rename)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
        self._write("log_artifact", path=str(dest), artifact_path=artifact_path)

    def set_tags(self, tags: dict[str, str]) -> None:
        self._write("set_tags", tags={k: str(v) for k, v in tags.items()})

    def log_table(self, data: dict[str, list[Any]], artifact_file: str) -> None:
        self._write("log_table", data=data, artifact_file=artifact_file)

    def log_input(self, path: Path, name: str, digest: str, context: str) -> None:
        self._write("log_input", path=str(path), name=name, digest=digest, context=context)

    def log_curves(self, keys: list[str], title: str, file_name: str) -> None:
        self._write("log_curves", keys=keys, title=title, file_name=file_name)

    def log_histogram(self, values: list[int], title: str, file_name: str) -> None:
        self._write("log_histogram", values=values, title=title, file_name=file_name)

    def log_bars(self, counts: dict[str, int], title: str, ylabel: str, file_name: str) -> None:
        self._write("log_bars", counts=counts, title=title, ylabel=ylabel, file_name=file_name)


def replay_journal(path: Path, tracker: Tracker, offset: int = 0) -> int:
    """Replay the whole lines of a `JournalTracker` journal after byte `offset` into `tracker`, in order;
    returns the offset to resume from (a line still being written is left for the next call)."""
    if not path.exists():
        return offset
    with open(path, "rb") as f:
        f.seek(offset)
        chunk = f.read()
    end = chunk.rfind(b"\n") + 1
    for raw in chunk[:end].splitlines():
        call = json.loads(raw)
        method = call.pop("m")
        if method == "log_input":
            call["path"] = Path(call["path"])
        getattr(tracker, method)(**call)
    return offset + end
