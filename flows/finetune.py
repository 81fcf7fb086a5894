from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.common import publish
from plm import stages


@task(name="finetune", cache_policy=NO_CACHE)
def finetune_task(
    p: stages.Pipeline, tok: stages.StageResult, pre: stages.StageResult, wv: stages.StageResult | None = None
) -> stages.StageResult:
    result = stages.finetune(p, tok, pre, wv)
    publish(p, result)
    return result


# Registry writes go over the network to an MLflow server in server mode: retry those.
@task(name="register", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def register_task(p: stages.Pipeline) -> stages.StageResult:
    return stages.register(p)
