from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.common import artifact_key, publish
from plm import stages


# Reading files can flake on network filesystems; bad input is quarantined, never retried.
@task(name="ingest", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def ingest_task(p: stages.Pipeline) -> stages.StageResult:
    result = stages.ingest(p)
    publish(p, result)
    publish_reasons(p, result)
    return result


def publish_reasons(p: stages.Pipeline, result: stages.StageResult) -> None:
    """A Prefect table artifact: every drop reason, the count it falls under and its rows (nothing lost)."""
    table = result.extra.get("reason_table") or {"reason": [], "kind": [], "rows": []}
    rows = [dict(zip(table, values, strict=True)) for values in zip(*table.values(), strict=True)]
    counts = result.counts
    create_table_artifact(
        key=artifact_key("ingest-reasons", p.spec.name),
        table=rows or [{"reason": "none", "kind": "kept", "rows": int(counts.get("rows_kept", 0))}],
        description=(
            f"snapshot `{result.extra.get('snapshot_id')}`: read {counts.get('rows_read', 0):,.0f} = kept "
            f"{counts.get('rows_kept', 0):,.0f} + duplicate {counts.get('rows_duplicate', 0):,.0f} + filtered "
            f"{counts.get('rows_filtered', 0):,.0f} + quarantined {counts.get('rows_quarantined', 0):,.0f}"
        ),
    )
