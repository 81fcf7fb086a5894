"""GloVe: the hand-written AdaGrad step against torch.optim.Adagrad on autograd's gradient, and the weighting."""

import pytest
import torch

from plm.models.glove import GloVe


@pytest.mark.parametrize("g0", [0.0, 1.0])
def test_adagrad_step_equals_torch_adagrad(g0):
    gen = torch.Generator().manual_seed(0)
    ours, ref = GloVe(7, 5, initial_accumulator=g0).double(), GloVe(7, 5).double()
    ours.reset_parameters(torch.Generator().manual_seed(1))
    ref.load_state_dict(ours.state_dict())
    opt = torch.optim.Adagrad(ref.parameters(), lr=0.05, initial_accumulator_value=g0, eps=1e-10)
    for _ in range(3):
        i, j = torch.randint(0, 7, (12,), generator=gen), torch.randint(0, 7, (12,), generator=gen)  # repeats
        x = torch.rand(12, generator=gen, dtype=torch.double) * 200 + 0.5  # some above x_max
        loss = ref(i, j, x, 100.0, 0.75)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert ours.adagrad_step(i, j, x, 0.05, 100.0, 0.75) == pytest.approx(float(loss), rel=1e-12)
    for name, param in ref.named_parameters():
        torch.testing.assert_close(getattr(ours, name), param, rtol=0, atol=1e-12)


def test_weighting_and_fit_of_a_small_matrix():
    assert GloVe.weight(torch.tensor([1.0, 100.0, 400.0]), 100.0, 0.75).tolist() == pytest.approx(
        [0.01**0.75, 1.0, 1.0])
    gen = torch.Generator().manual_seed(0)
    i, j = torch.meshgrid(torch.arange(6), torch.arange(6), indexing="ij")
    i, j = i.reshape(-1), j.reshape(-1)
    x = torch.exp(torch.randn(6, 2, generator=gen) @ torch.randn(2, 6, generator=gen)).reshape(-1) * 50
    model = GloVe(6, 4)
    first = model.adagrad_step(i, j, x, 0.1, 100.0, 0.75)
    for _ in range(300):
        last = model.adagrad_step(i, j, x, 0.1, 100.0, 0.75)
    assert last < 0.05 * first  # a rank-2 log matrix plus biases is fitted almost exactly
