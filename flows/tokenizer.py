from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.common import publish
from plm import stages


@task(name="tokenizer", cache_policy=NO_CACHE)
def tokenizer_task(p: stages.Pipeline, ingested: stages.StageResult) -> stages.StageResult:
    result = stages.tokenizer(p, ingested)
    publish(p, result)
    return result
