"""The runtime every stage shares: the stage contract, one pipeline run (spec, home, MLflow session,
results so far) and the reuse-or-run step that makes a stage output content-addressed.

Each stage computes its fingerprint from its spec slice and its inputs' fingerprints; a finished
output with that fingerprint is reused (and said so), otherwise the stage runs inside a nested
MLflow run and writes its output atomically under `artifacts/<stage>/<fingerprint>/`, its typed
output model saved in the manifest.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel

from plm.artifacts import ArtifactRef, StageWriter, fingerprint, lookup, sha256_file, stage_dir, write_stage
from plm.config import PipelineSpec, RunnerSpec
from plm.tracker import JournalTracker, NullTracker, Progress, Tracker, no_progress


def _always(spec: PipelineSpec) -> bool:
    return True


@dataclass(frozen=True)
class Stage:
    """One arrow of the pipeline, as its module declares it (plm/stages/<name>.py)."""

    name: str
    version: int
    """Bump whenever the stage's code changes what it writes: the fingerprint must change with it."""
    needs: tuple[str, ...]
    """Upstream stages whose outputs it reads: they run first, always."""
    output: type[BaseModel]
    """The typed output model saved in its manifest (`StageResult.output`)."""
    run: Callable[..., StageResult | None]
    """`run(pipeline, **upstream results by stage name)`."""
    label: Callable[[Pipeline], str]
    """What names one run of it (`<stage>[<label>]` in Prefect), e.g. the tokenizer kind and corpus snapshot."""
    uses: tuple[str, ...] = ()
    """Upstream stages read when the pipeline has them: they run first when they apply to the spec."""
    applies: Callable[[PipelineSpec], bool] = _always
    """Whether the whole pipeline includes it (a stage asked for by name always runs)."""
    command: bool = False
    """Exposed as `plm <name> SPEC` (runs it and whatever it needs); stages with a command of their own say False."""
    registry: bool = False
    """Writes the MLflow model registry and reads back what it wrote (versions, aliases): it runs in the
    flow's process on the pipeline's own tracking session, never on a worker (see `Pipeline.stage_run`)."""


class Done(NamedTuple):
    """What a stage's work hands back to the runtime: counts, metrics (logged) and its output model."""

    counts: dict[str, float]
    metrics: dict[str, float]
    output: BaseModel


@dataclass
class StageResult:
    """A finished stage output (run now or reused): where it is, what made it, and its typed output."""

    stage: str
    fingerprint: str
    path: Path
    reused: bool
    seconds: float
    output: Any = None
    """The stage's output model (plm.stages.<stage>.Output)."""
    counts: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None
    inputs: dict[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> ArtifactRef:
        return ArtifactRef(self.stage, self.fingerprint, self.path)

    @classmethod
    def from_manifest(cls, output: type[BaseModel], path: Path, manifest: dict[str, Any], reused: bool,
                      seconds: float = 0.0) -> StageResult:  # fmt: skip
        # manifests before plm.stages/ kept the output as untyped `extra`
        data = manifest.get("output", manifest.get("extra", {}))
        return cls(
            manifest["stage"], manifest["fingerprint"], path, reused, seconds, output=output.model_validate(data),
            counts=manifest.get("counts", {}), metrics=manifest.get("metrics", {}), run_id=manifest.get("run_id"),
            inputs=manifest.get("inputs", {}),
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "fingerprint": self.fingerprint,
            "path": str(self.path),
            "reused": self.reused,
            "seconds": round(self.seconds, 3),
            "run_id": self.run_id,
            "inputs": self.inputs,
            "counts": self.counts,
            "metrics": self.metrics,
            **(self.output.model_dump(mode="json", exclude_none=True) if self.output is not None else {}),
        }


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


class Pipeline:
    """One pipeline run: the spec, the home directory, the MLflow session and the results so far."""

    def __init__(
        self,
        spec: PipelineSpec,
        *,
        progress: Progress = no_progress,
        log: Callable[[str], None] = lambda msg: None,
        tracking: bool = True,
        run_name: str | None = None,
        stage_run: tuple[str, Path] | None = None,
        memo: dict[tuple[str, ...], Any] | None = None,
    ) -> None:
        self.spec = spec
        self.home = spec.home_dir()
        self.progress = progress
        self.log = log
        self.tracking = tracking
        self.run_name = run_name or spec.name
        self.session: Any = None
        self.results: dict[str, StageResult] = {}
        self.memo: dict[tuple[str, ...], Any] = {} if memo is None else memo
        """Objects stages share within this run (a parsed labelled task), never across runs."""
        self.stage_run = stage_run
        """(MLflow run id, journal path) when this process runs one stage for a flow that alone writes to
        MLflow (a Prefect task, perhaps on a Dask worker): the stage records into a `JournalTracker` that the
        flow replays into that run (`flows.stages`). Needs `tracking=False`."""
        self.current: str | None = None
        """The stage running now (None between stages)."""

    def __enter__(self) -> Pipeline:
        self.home.mkdir(parents=True, exist_ok=True)
        if self.tracking:
            from plm.tracking import TrackingSession, resolve_tracking_uri

            uri = resolve_tracking_uri(self.spec.tracking.uri, self.home)
            self.session = TrackingSession(
                uri, self.spec.tracking.experiment or self.spec.name, self.home, self.run_name,
                tags={"plm.pipeline": self.spec.name},
            )  # fmt: skip
            self.session.parent.log_params(flatten(self.spec.model_dump(mode="json", exclude={"home"})))
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self.session is not None:
            tags = {f"plm.fingerprint.{r.stage}": r.fingerprint for r in self.results.values()}
            tags.update({f"plm.reused.{r.stage}": str(r.reused).lower() for r in self.results.values()})
            if exc is not None:
                tags["plm.error"] = f"{exc_type.__name__}: {exc}"[:5000]
        if isinstance(exc, KeyboardInterrupt) and self.current is not None:
            exc.plm_stage = self.current  # type: ignore[attr-defined]  # `plm run` names it in its one line
        if self.session is not None:
            self.session.parent.set_tags(tags)
            self.session.end(exc is None, killed=isinstance(exc, KeyboardInterrupt))

    @property
    def run_id(self) -> str | None:
        return self.session.run_id if self.session else None

    @contextmanager
    def stage_tracker(self, stage: str, tags: dict[str, str]) -> Iterator[Tracker]:
        """The nested MLflow run of one stage (a NullTracker without tracking), FAILED if the block raises."""
        if self.session is None:
            yield NullTracker() if self.stage_run is None else JournalTracker(*self.stage_run, tags=tags)
            return
        tracker = self.session.start_stage(stage, tags)
        ok = killed = False
        try:
            yield tracker
            ok = True
        except KeyboardInterrupt:
            killed = True
            raise
        finally:
            self.session.end_stage(tracker, ok, killed=killed)

    def upstream(self, stage: Stage, fp: str) -> StageResult | None:
        """The result of `stage` in this run, else its finished output of fingerprint `fp` in the home."""
        if stage.name in self.results:
            return self.results[stage.name]
        ref = lookup(self.home, stage.name, fp)
        return None if ref is None else StageResult.from_manifest(stage.output, ref.path, ref.manifest, True)

    def run(
        self,
        stage: Stage,
        spec_slice: dict[str, Any],
        inputs: dict[str, str],
        work: Callable[[StageWriter, Tracker], Done],
        resumable: bool = False,
    ) -> StageResult:
        """Reuse the finished output of this fingerprint, or run `work` into a fresh one."""
        name = stage.name
        fp = fingerprint(name, stage.version, spec_slice, inputs)
        start = time.perf_counter()
        ref = lookup(self.home, name, fp)
        tags = {"plm.fingerprint": fp, **{f"plm.input.{k}": v for k, v in inputs.items()}}
        if ref is not None:
            self.log(f"{name}: reusing {fp} (finished {ref.manifest.get('created_at')})")
            with self.stage_tracker(name, {**tags, "plm.reused": "true"}) as tracker:
                tracker.set_tags({"plm.source_run_id": str(ref.manifest.get("run_id"))})
                tracker.log_metrics(ref.manifest.get("metrics", {}))
            result = StageResult.from_manifest(stage.output, ref.path, ref.manifest, True, time.perf_counter() - start)
        else:
            self.log(f"{name}: running {fp}")
            self.current = name
            with self.stage_tracker(name, tags) as tracker:
                tracker.log_params(flatten(spec_slice))
                self._log_inputs(tracker, name, inputs)
                with write_stage(self.home, name, fp, spec_slice, inputs, resumable=resumable) as writer:
                    done = work(writer, tracker)
                    writer.extra.update(counts=done.counts, metrics=done.metrics,
                                        output=done.output.model_dump(mode="json"), run_id=tracker.run_id)  # fmt: skip
                    tracker.log_metrics(done.metrics)
                path = stage_dir(self.home, name, fp)
                manifest = json.loads((path / "manifest.json").read_text())
            result = StageResult.from_manifest(stage.output, path, manifest, False, time.perf_counter() - start)
            self.log(f"{name}: done in {result.seconds:.1f}s")
            self.current = None
        self.results[name] = result
        return result

    def _log_inputs(self, tracker: Tracker, stage: str, inputs: dict[str, str]) -> None:
        """Upstream outputs as MLflow dataset inputs, digest = sha256 of their manifest (covers every file)."""
        for name in inputs:
            upstream = self.results.get(name)
            if upstream is None:
                continue
            digest = sha256_file(upstream.path / "manifest.json")
            # MLflow caps dataset digests at 36 characters: the full sha256 goes into a tag beside it.
            tracker.log_input(upstream.path, f"{name}-{upstream.fingerprint}", digest[:32], context=stage)
            tracker.set_tags({f"plm.input_digest.{name}": digest})


@contextmanager
def data_cluster(runner: RunnerSpec, log: Callable[[str], None] = lambda msg: None) -> Iterator[Any]:
    """A Dask client for `runner.kind: dask` (the cluster at its address, or a LocalCluster of `runner.workers`
    processes, closed afterwards), None for `local`: what the shard runner maps the data stages' shards over."""
    if runner.kind != "dask":
        yield None
        return
    from distributed import Client, LocalCluster, get_worker, worker_client

    from plm.objectives.shardrun import local_workers

    try:
        get_worker()  # this stage is itself a task on the cluster (the flow's DaskTaskRunner): map onto it
    except ValueError:
        pass
    else:
        log("runner: this Dask worker's cluster")
        with worker_client() as client:  # seceded: the worker's slot is free for the shards meanwhile
            yield client
        return

    address = runner.resolved_address()
    if address:
        log(f"runner: Dask cluster at {address}")
        with Client(address) as client:
            yield client
        return
    log(f"runner: local Dask cluster of {runner.workers} processes")
    # shard jobs are single-threaded (OMP_NUM_THREADS=1 kept); glibc's malloc defaults kept (see local_workers);
    # this process's environment restored, else later subprocesses (torchrun ranks, ...) would run one BLAS thread
    with local_workers(), LocalCluster(n_workers=runner.workers, threads_per_worker=1, processes=True,
                                       dashboard_address=None) as cluster, Client(cluster) as client:  # fmt: skip
        yield client
