from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.common import publish
from plm import stages


@task(name="examples", cache_policy=NO_CACHE)
def examples_task(p: stages.Pipeline, ingested: stages.StageResult, tok: stages.StageResult) -> stages.StageResult:
    result = stages.examples(p, ingested, tok)
    publish(p, result)
    return result
