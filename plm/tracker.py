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
    """What library code may record about a run. Implementations: NullTracker, MlflowTracker."""

    def log_params(self, params: dict[str, Any]) -> None: ...

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...

    def set_tags(self, tags: dict[str, str]) -> None: ...


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


