"""Shared test doubles of the explanation tests."""

from __future__ import annotations

import pytest
import torch
from torch import nn


class Counting(nn.Module):
    """Records the batch size of every forward pass of ``inner``."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(x.shape[0])
        return self.inner(x)


@pytest.fixture
def counting_model() -> type[Counting]:
    """The :class:`Counting` wrapper, to count and size the forward passes of a model."""
    return Counting


def tiny_surrogate() -> nn.Module:
    """A two-stage gap-head CNN with fixed normalisers, seeded (16x16 input, 8x8 last map)."""
    from surrogate import PhysicalSurrogate, RoughnessCNN

    torch.manual_seed(0)
    net = PhysicalSurrogate(RoughnessCNN(widths=(4, 8), kernel_size=(3, 3), head="gap"))
    net.input_norm.set_statistics(0.0, 0.05)
    net.target_norm.set_statistics(0.1, 0.04)
    return net.eval()


@pytest.fixture
def tiny_model() -> nn.Module:
    """A fresh :func:`tiny_surrogate`."""
    return tiny_surrogate()


@pytest.fixture(scope="module")
def tiny_campaign() -> tuple[nn.Module, dict]:
    """:func:`tiny_surrogate` and six simulated 16x16 designs with their truth and margins."""
    from data.campaign import simulate_campaign

    ds = simulate_campaign(6, size=16, seed=2)
    return tiny_surrogate(), {k: ds[k].values for k in ("roughness", "contribution", "peak_margin")}
