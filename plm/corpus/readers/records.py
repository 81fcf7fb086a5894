"""What a reader yields: records, the quarantine vocabulary, and the exception that ends a source early."""

from __future__ import annotations

from typing import Any, NamedTuple

from plm.config import CorpusSpec

QUARANTINE_REASONS = (
    "empty_file", "binary", "nul_bytes", "undecodable:<encoding>", "too_large", "invalid_json", "missing_field",
    "bad_columns", "invalid_csv", "invalid_xml", "corrupt_archive", "decompression_bomb",
)
QUARANTINE_RAW_BYTES = 64 * 1024
"""Raw bytes kept for one quarantined unit (its first 64 KiB)."""
BOM = b"\xef\xbb\xbf"


class RawRecord(NamedTuple):
    """One input unit. `raw` is text when usable; bytes (kept verbatim) when `reason` quarantines it.

    `source_id` is the record's own id (`corpus.id_field`), `metadata` the `corpus.metadata_fields`
    it has; both None when not configured or absent.
    """

    position: int
    title: str | None
    raw: str | bytes
    reason: str | None = None
    source_id: str | None = None
    metadata: dict[str, Any] | None = None


class Rejected(Exception):
    """Reading a source stopped for a quarantine `reason`; records yielded before it stand.

    `raw` is what the quarantine row keeps: the offending bytes when there are some (a binary
    file's head), else the message.
    """

    def __init__(self, reason: str, message: str, raw: bytes | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.raw = message.encode() if raw is None else raw



def pick_fields(obj: dict[str, Any], cfg: CorpusSpec) -> tuple[str | None, str | None, dict[str, Any] | None]:
    """Title, source id and metadata of a JSON/CSV/Parquet record."""
    title = obj.get("title")
    source_id = obj.get(cfg.id_field) if cfg.id_field else None
    metadata = {k: obj[k] for k in cfg.metadata_fields if k in obj} if cfg.metadata_fields else None
    return (
        title if isinstance(title, str) else None,
        None if source_id is None else str(source_id),
        metadata,
    )
