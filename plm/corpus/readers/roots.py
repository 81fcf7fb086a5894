"""Allowed roots: which paths a spec may read (checked before a file is opened, hashed or stat'ed)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

def default_roots(home: Path | None = None) -> list[Path]:
    """Roots used when `corpus.allowed_roots` is empty: the current directory, PLM_HOME (or `home`),
    the system temp directory, the fetched-samples cache and the installed packages that ship the named samples."""
    from plm.samples import SAMPLES, SampleNotFound, cache_dir, package_dir

    roots = [Path.cwd(), Path(home or os.environ.get("PLM_HOME", ".plm")), Path(tempfile.gettempdir()), cache_dir()]
    for package in sorted({pkg for pkg, _, _ in SAMPLES.values()}):
        try:
            roots.append(package_dir(package))
        except SampleNotFound:
            continue
    return roots


def check_allowed(
    path: Path | str, roots: Sequence[str | Path] = (), home: Path | None = None, key: str | None = None
) -> Path:
    """`path` resolved (symlinks too); PermissionError naming it (and the spec `key`) when it lies outside every root.

    Empty `roots` means `default_roots(home)`. Call it before the file is opened, hashed or even stat'ed as a file.
    """
    resolved = Path(path).expanduser().resolve()
    allowed = list(dict.fromkeys(Path(r).expanduser().resolve() for r in (roots or default_roots(home))))
    if not any(resolved == root or resolved.is_relative_to(root) for root in allowed):
        names = ", ".join(str(r) for r in allowed)
        where = f"{key}: " if key else ""
        raise PermissionError(f"{where}{path}: resolves to {resolved}, outside corpus.allowed_roots ({names})")
    return resolved
