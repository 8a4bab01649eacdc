"""Normaliser buffers and round trip; PhysicalSurrogate against a fixed-weight network."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from surrogate.normaliser import Normaliser, PhysicalSurrogate


class FlatLinear(nn.Module):
    """``(batch, 1, 2, 2) -> (batch,)``: a linear map with fixed, known weights."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 1)
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor([[1.0, -2.0, 0.5, 3.0]]))
            self.linear.bias.fill_(0.25)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1)).squeeze(1)


def test_default_is_identity_and_unfitted() -> None:
    norm = Normaliser()
    assert not bool(norm.fitted)
    v = torch.tensor([-1.5, 0.0, 2.0])
    torch.testing.assert_close(norm(v), v, atol=0, rtol=0)
    torch.testing.assert_close(norm.inverse(v), v, atol=0, rtol=0)


def test_forward_and_inverse_by_hand() -> None:
    norm = Normaliser()
    norm.set_statistics(2.5, 0.5)
    torch.testing.assert_close(norm(torch.tensor([3.0, 2.0, 2.5])), torch.tensor([1.0, -1.0, 0.0]))
    torch.testing.assert_close(norm.inverse(torch.tensor([2.0, -4.0])), torch.tensor([3.5, 0.5]))


@pytest.mark.parametrize(("mean", "std"), [(0.0, 1.0), (-3.2, 0.07), (1e3, 250.0)])
def test_round_trip(mean: float, std: float) -> None:
    norm = Normaliser()
    norm.set_statistics(mean, std)
    v = torch.randn(3, 1, 4, 5, generator=torch.Generator().manual_seed(0)) * 7 - 2
    z = norm(v)
    assert z.shape == v.shape
    torch.testing.assert_close(norm.inverse(z), v, atol=1e-4 * max(1.0, abs(mean)), rtol=1e-5)
    torch.testing.assert_close(norm(norm.inverse(v)), v, atol=1e-4, rtol=1e-5)


def test_statistics_are_buffers_in_state_dict() -> None:
    norm = Normaliser()
    norm.set_statistics(1.25, 4.0)
    assert list(norm.parameters()) == []
    state = norm.state_dict()
    assert set(state) == {"mean", "std", "fitted"}
    assert state["mean"].item() == 1.25
    assert state["std"].item() == 4.0
    assert state["fitted"].dtype == torch.bool
    assert bool(state["fitted"])
    fresh = Normaliser()
    fresh.load_state_dict(state)
    assert bool(fresh.fitted)
    torch.testing.assert_close(fresh(torch.tensor([5.25])), torch.tensor([1.0]))


@pytest.mark.parametrize("std", [0.0, -1.0, math.nan])
def test_non_positive_std_raises_and_keeps_state(std: float) -> None:
    norm = Normaliser()
    with pytest.raises(ValueError, match="standard deviation must be positive"):
        norm.set_statistics(3.0, std)
    assert not bool(norm.fitted)
    assert norm.mean.item() == 0.0
    assert norm.std.item() == 1.0


def test_physical_surrogate_by_hand() -> None:
    model = PhysicalSurrogate(FlatLinear())
    model.input_norm.set_statistics(1.0, 2.0)
    model.target_norm.set_statistics(10.0, 3.0)
    x = torch.tensor([[[[1.0, 3.0], [5.0, -1.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    # sample 0: z = [0, 1, 2, -1]; w.z + b = 0 - 2 + 1 - 3 + 0.25 = -3.75; *3 + 10 = -1.25
    # sample 1: z = -0.5 each; w.z + b = -0.5 * 2.5 + 0.25 = -1.0; *3 + 10 = 7.0
    torch.testing.assert_close(model(x), torch.tensor([-1.25, 7.0]))
    # the same, composed from the parts
    torch.testing.assert_close(
        model(x), model.target_norm.inverse(model.network(model.input_norm(x)))
    )


def test_physical_surrogate_state_carries_statistics() -> None:
    model = PhysicalSurrogate(FlatLinear())
    model.input_norm.set_statistics(1.0, 2.0)
    model.target_norm.set_statistics(10.0, 3.0)
    state = model.state_dict()
    for prefix in ("input_norm", "target_norm"):
        assert {f"{prefix}.mean", f"{prefix}.std", f"{prefix}.fitted"} <= set(state)
    fresh = PhysicalSurrogate(FlatLinear())
    fresh.load_state_dict(state)
    x = torch.randn(4, 1, 2, 2, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(fresh(x), model(x), atol=0, rtol=0)
    assert fresh.target_norm.mean.item() == 10.0
