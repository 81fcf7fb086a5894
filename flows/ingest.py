from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.common import publish
from plm import stages


# Reading files can flake on network filesystems; bad input is quarantined, never retried.
@task(name="ingest", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def ingest_task(p: stages.Pipeline) -> stages.StageResult:
    result = stages.ingest(p)
    publish(p, result)
    return result
