"""Example shard files: written atomically, with the statistics of their generation in the Parquet footer.

A shard that exists is complete (temp name, then `os.replace`), and a resumed run reads its
statistics back from the footer instead of regenerating it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


def write_shard(table: pa.Table, path: Path, meta: dict[bytes, bytes], **parquet: Any) -> None:
    """zstd level 1 (as small as the default level here, faster to write); `parquet` adds writer options."""
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    pq.write_table(table.replace_schema_metadata(meta), tmp, compression="zstd", compression_level=1, **parquet)
    os.replace(tmp, path)


def stats_meta(key: bytes, stats: dict[str, Any]) -> dict[bytes, bytes]:
    return {key: json.dumps(stats, sort_keys=True).encode()}


def read_meta(path: Path) -> dict[bytes, bytes]:
    return pq.read_schema(path).metadata or {}


def read_stats(path: Path, key: bytes) -> dict[str, Any]:
    return json.loads(read_meta(path)[key])


def remove_partial(directory: Path) -> int:
    """Delete the temporary files of shards whose writer died before renaming them (a killed worker); returns how many."""
    stale = list(Path(directory).rglob("*.parquet.tmp*"))
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)
