from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.common import publish
from plm import stages


@task(name="pretrain", cache_policy=NO_CACHE)
def pretrain_task(p: stages.Pipeline, tok: stages.StageResult, ex: stages.StageResult) -> stages.StageResult:
    result = stages.pretrain(p, tok, ex)
    publish(p, result)
    return result


@task(name="word_vectors", cache_policy=NO_CACHE)
def word_vectors_task(p: stages.Pipeline, tok: stages.StageResult, ex: stages.StageResult) -> stages.StageResult | None:
    """A BERT pipeline's companion word2vec vectors (`word_vectors` in the spec)."""
    result = stages.word_vectors(p, tok, ex)
    if result is not None:
        publish(p, result)
    return result


# Registry writes go over the network to an MLflow server in server mode: retry those.
@task(name="register-pretrained", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def register_pretrained_task(p: stages.Pipeline) -> stages.StageResult:
    """Register only the pretrained model (gpt pipelines, which have no fine-tuning stage)."""
    return stages.register_pretrained(p)
