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
