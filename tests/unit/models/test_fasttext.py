"""fastText pieces: character n-grams, the hash against gensim's, and the batched update against autograd."""

import pytest
import torch

from plm.models.fasttext import FastText, expand
from plm.objectives.subwords import char_ngrams, ft_hash, ngram_buckets, subword_table


def test_ngrams_of_a_korean_word_match_the_paper():
    assert char_ngrams("시나브로", 3, 3) == ["<시나", "시나브", "나브로", "브로>"]
    # whole `<word>` included once short enough, lone boundary markers never
    assert char_ngrams("ab", 1, 4) == ["<a", "<ab", "<ab>", "a", "ab", "ab>", "b", "b>"]
    assert char_ngrams("word", 3, 0) == []


def test_hash_matches_gensim_and_fasttext_on_non_ascii():
    ft = pytest.importorskip("gensim.models.fasttext")
    for gram in ["<시나", "브로>", "<the", "naïve", "ab", "€uro"]:
        assert ft_hash(gram.encode()) == ft.ft_hash_bytes(gram.encode())
    assert ft_hash(b"a") == 0xE40C292C  # FNV-1a 32 of "a", the published test vector
    assert ngram_buckets("시나브로", 3, 6, 1000) == list(ft.ft_ngram_hashes("시나브로", 3, 6, 1000))


def test_subword_table_puts_words_first_then_buckets():
    ids, offsets = subword_table(["ab", "시나브로"], 3, 3, 50)
    assert offsets.tolist() == [0, 3, 8]  # `ab`: itself + <ab, ab> (<ab> is 4 long); 시나브로: itself + 4 n-grams
    assert ids[0] == 0 and ids[3] == 1
    assert ids[1:3].tolist() == [2 + ft_hash(g.encode()) % 50 for g in ("<ab", "ab>")]
    rows, owner = expand(torch.tensor([1, 0, 1]), torch.from_numpy(ids), torch.from_numpy(offsets))
    assert owner.tolist() == [0] * 5 + [1] * 3 + [2] * 5
    assert rows[:5].tolist() == ids[3:].tolist() and rows[5:8].tolist() == ids[:3].tolist()


def _model(words, cbow):
    ids, offsets = subword_table(words, 2, 3, 13)
    model = FastText(len(words), 13, 6, torch.from_numpy(ids), torch.from_numpy(offsets), cbow=cbow).double()
    with torch.no_grad():
        model.out_embed.weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(1))
        model.in_embed.weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(2))
    return model


WORDS = ["the", "cat", "cats", "sat", "on", "mat", "시나브로", "a"]


@pytest.mark.parametrize("cbow", [False, True])
def test_step_is_fasttexts_update(cbow):
    """Outputs: SGD on the loss. Inputs: each subword row of an example gets the example's whole hidden step."""
    model = _model(WORDS, cbow)
    gen = torch.Generator().manual_seed(0)
    if cbow:
        inputs, offsets = torch.tensor([1, 2, 3, 6, 4, 5, 7]), torch.tensor([0, 3, 5, 7])
        targets = torch.tensor([0, 6, 1])
    else:
        inputs, offsets = torch.tensor([2, 6, 6, 1, 2, 0]), None  # repeated centers
        targets = torch.tensor([1, 3, 4, 5, 0, 7])
    negatives = torch.randint(0, len(WORDS), (len(targets), 3), generator=gen)
    h = model.hidden(inputs, offsets).detach().requires_grad_(True)
    out = model.out_embed.weight.detach().clone().requires_grad_(True)
    ids = torch.cat([targets.unsqueeze(1), negatives], 1)
    scores = (out[ids] * h.unsqueeze(1)).sum(2)
    loss = -(torch.nn.functional.logsigmoid(scores[:, 0]).sum() + torch.nn.functional.logsigmoid(-scores[:, 1:]).sum())
    grad_h, grad_out = torch.autograd.grad(loss, [h, out])
    expected_in = model.in_embed.weight.detach().clone()
    rows, owner = expand(inputs, model.subword_ids, model.subword_offsets)
    if offsets is not None:
        owner = torch.repeat_interleave(torch.arange(len(targets)), offsets[1:] - offsets[:-1])[owner]
    expected_in.index_add_(0, rows, -0.1 * grad_h[owner])
    expected_out = model.out_embed.weight.detach() - 0.1 * grad_out
    assert float(model(inputs, targets, negatives, offsets)) == pytest.approx(float(loss), rel=1e-12)
    step_loss = model.sgd_step(inputs, targets, negatives, 0.1, offsets=offsets)
    assert step_loss == pytest.approx(float(loss), rel=1e-12)
    torch.testing.assert_close(model.in_embed.weight.detach(), expected_in, rtol=0, atol=1e-12)
    torch.testing.assert_close(model.out_embed.weight.detach(), expected_out, rtol=0, atol=1e-12)


def test_word_and_unseen_vectors_are_means_of_their_rows():
    model = _model(WORDS, False)
    table = model.in_embed.weight.detach()
    cats = WORDS.index("cats")
    own = [cats] + [len(WORDS) + b for b in ngram_buckets("cats", 2, 3, 13)]
    torch.testing.assert_close(model.word_vectors()[cats], table[own].mean(0))
    unseen = ngram_buckets("cattery", 2, 3, 13)
    torch.testing.assert_close(model.ngram_vector(unseen), table[[len(WORDS) + b for b in unseen]].mean(0))
    assert float(model.ngram_vector([]).abs().sum()) == 0.0
