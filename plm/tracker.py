"""The `Tracker` protocol library code records through, its no-op implementation, and progress callbacks.

Stdlib only, so every layer may use it; the MLflow implementation lives in `plm.tracking`.
"""

from __future__ import annotations

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


