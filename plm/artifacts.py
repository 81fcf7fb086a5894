"""Content-addressed stage outputs: `artifacts/<stage>/<fingerprint>/`, complete when `manifest.json` exists.

A stage writes into a temporary sibling directory, writes `manifest.json` last and renames the
directory into place, so a reader never sees a half-written output and a crash leaves only a
temporary directory that the next attempt removes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plm import __version__

MANIFEST = "manifest.json"


def canonical_json(obj: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace; the input of every fingerprint."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def fingerprint(stage: str, version: int, spec_slice: dict[str, Any], inputs: dict[str, str]) -> str:
    """sha256 over (stage, stage version, spec slice, upstream fingerprints), 16 hex chars."""
    payload = canonical_json({"stage": stage, "version": version, "spec": spec_slice, "inputs": inputs})
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class ArtifactRef:
    """A finished stage output: what downstream stages receive instead of data."""

    stage: str
    fingerprint: str
    path: Path
    manifest: dict[str, Any] = field(default_factory=dict, compare=False)

    def file(self, name: str) -> Path:
        return self.path / name

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "fingerprint": self.fingerprint, "path": str(self.path)}


def stage_dir(home: Path, stage: str, fp: str) -> Path:
    return home / "artifacts" / stage / fp


def lookup(home: Path, stage: str, fp: str) -> ArtifactRef | None:
    """The finished output of (stage, fingerprint), or None if it was never completed."""
    path = stage_dir(home, stage, fp)
    manifest = path / MANIFEST
    if not manifest.is_file():
        return None
    return ArtifactRef(stage, fp, path, json.loads(manifest.read_text()))


def load_ref(path: str | Path) -> ArtifactRef:
    """An ArtifactRef from a finished output directory (e.g. a path printed by `--json`)."""
    path = Path(path)
    manifest = json.loads((path / MANIFEST).read_text())
    return ArtifactRef(manifest["stage"], manifest["fingerprint"], path, manifest)


class StageWriter:
    """The temporary directory a stage fills; `extra` is merged into the manifest."""

    def __init__(self, tmp: Path) -> None:
        self.path = tmp
        self.extra: dict[str, Any] = {}


@contextmanager
def write_stage(
    home: Path,
    stage: str,
    fp: str,
    spec_slice: dict[str, Any],
    inputs: dict[str, str],
    resumable: bool = False,
) -> Iterator[StageWriter]:
    """Yield a temp dir to fill; on success write the manifest (with file hashes) and rename atomically.

    `resumable`: the temp dir is `.partial-<fp>`, kept when the process is killed or interrupted
    (not when the stage raises), so a stage that writes its parts atomically can skip the parts
    already there on the next attempt. An exclusive lock
    keeps two processes out of the same partial directory.
    """
    final = stage_dir(home, stage, fp)
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".tmp-{fp}-*"):
        if not _pid_alive(stale.name.rsplit("-", 1)[-1]):
            shutil.rmtree(stale, ignore_errors=True)
    lock = None
    if resumable:
        tmp = final.parent / f".partial-{fp}"
        tmp.mkdir(exist_ok=True)
        lock = _lock(final.parent / f".partial-{fp}.lock")
    else:
        tmp = final.parent / f".tmp-{fp}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    writer = StageWriter(tmp)
    try:
        yield writer
        files = {
            str(p.relative_to(tmp)): sha256_file(p)
            for p in sorted(tmp.rglob("*"))
            if p.is_file()
        }
        manifest = {
            "stage": stage,
            "fingerprint": fp,
            "spec": spec_slice,
            "inputs": inputs,
            "files": files,
            "code_version": __version__,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **writer.extra,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False, default=str))
        if final.exists():  # another run finished the same work first: keep theirs
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, final)
    except Exception:  # the stage failed (bad input, a failed gate): leave nothing behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except BaseException:  # interrupted: a resumable stage keeps its finished parts for the next attempt
        if not resumable:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if lock is not None:
            lock.close()
            if final.exists():
                Path(lock.name).unlink(missing_ok=True)


@contextmanager
def waiting_lock(path: Path) -> Iterator[None]:
    """An exclusive flock on `path` for one block, waiting for another holder (store creation on a fresh home)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _lock(path: Path) -> Any:
    """An exclusive flock held until the returned file is closed; fails fast naming the holder."""
    import fcntl

    f = open(path, "a+")  # noqa: SIM115 - closed by the caller
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise RuntimeError(f"{path.parent / path.stem} is being written by pid {holder}") from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    return f


def _pid_alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True
