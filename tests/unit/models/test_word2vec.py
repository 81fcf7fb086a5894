"""word2vec module: the hand-written sparse update against autograd, and the initialisation."""

import pytest
import torch

from plm.models.word2vec import Word2Vec


def _model(vocab: int, dim: int, cbow: bool) -> Word2Vec:
    model = Word2Vec(vocab, dim, cbow=cbow).double()
    with torch.no_grad():  # non-zero outputs so every gradient term is exercised
        model.out_embed.weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(1))
        model.in_embed.weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(2))
    return model


def test_skipgram_step_is_sgd_on_the_autograd_gradient():
    torch.manual_seed(0)
    model = _model(11, 7, cbow=False)
    centers = torch.tensor([0, 3, 3, 5, 0, 10])  # repeated rows must accumulate
    contexts = torch.tensor([1, 2, 2, 4, 6, 0])
    negatives = torch.randint(0, 11, (6, 4))
    loss = model(centers, contexts, negatives)
    loss.backward()
    grad_in, grad_out = model.in_embed.weight.grad.to_dense(), model.out_embed.weight.grad.to_dense()
    before_in, before_out = model.in_embed.weight.detach().clone(), model.out_embed.weight.detach().clone()
    step_loss = model.sgd_step(centers, contexts, negatives, lr=0.1)
    assert step_loss == pytest.approx(float(loss.detach()), rel=1e-12)
    torch.testing.assert_close(model.in_embed.weight.detach(), before_in - 0.1 * grad_in, rtol=0, atol=1e-12)
    torch.testing.assert_close(model.out_embed.weight.detach(), before_out - 0.1 * grad_out, rtol=0, atol=1e-12)


def test_cbow_step_follows_word2vec():
    """Outputs: plain SGD. Inputs: the mean's gradient goes whole to each context word (word2vec, gensim)."""
    torch.manual_seed(0)
    model = _model(9, 5, cbow=True)
    contexts = torch.tensor([1, 2, 3, 2, 4, 5, 6, 7, 1])
    offsets = torch.tensor([0, 3, 5, 9])  # three examples with 3, 2 and 4 context words
    centers = torch.tensor([0, 8, 3])
    negatives = torch.randint(0, 9, (3, 3))
    counts = (offsets[1:] - offsets[:-1]).double()
    before_in, before_out = model.in_embed.weight.detach().clone(), model.out_embed.weight.detach().clone()

    model(contexts, centers, negatives, offsets).backward()
    grad_out = model.out_embed.weight.grad.to_dense()
    model.zero_grad()
    # Weighting example b by its context count undoes the mean's 1/count for the inputs.
    h = model.hidden(contexts, offsets)
    out = model.out_embed(torch.cat([centers.unsqueeze(1), negatives], 1))
    scores = torch.bmm(out, h.unsqueeze(2)).squeeze(2)
    logsig = torch.nn.functional.logsigmoid
    per_example = -(logsig(scores[:, 0]) + logsig(-scores[:, 1:]).sum(1))
    (per_example * counts).sum().backward()
    grad_in = model.in_embed.weight.grad.to_dense()

    model.sgd_step(contexts, centers, negatives, lr=0.05, offsets=offsets)
    torch.testing.assert_close(model.out_embed.weight.detach(), before_out - 0.05 * grad_out, rtol=0, atol=1e-12)
    torch.testing.assert_close(model.in_embed.weight.detach(), before_in - 0.05 * grad_in, rtol=0, atol=1e-12)


def test_initialisation_is_word2vecs_and_seeded():
    a, b = Word2Vec(50, 20), Word2Vec(50, 20)
    a.reset_parameters(torch.Generator().manual_seed(3))
    b.reset_parameters(torch.Generator().manual_seed(3))
    assert torch.equal(a.in_embed.weight, b.in_embed.weight)
    assert a.in_embed.weight.abs().max() <= 0.5 / 20 and a.in_embed.weight.std() > 0.1 / 20
    assert not a.out_embed.weight.any()
    # zero outputs: every score is 0, so the loss of a pair with k negatives is (1 + k) log 2
    loss = a(torch.tensor([1]), torch.tensor([2]), torch.tensor([[3, 4, 5]]))
    assert float(loss.detach()) == pytest.approx(4 * torch.log(torch.tensor(2.0)).item())
