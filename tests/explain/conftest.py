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
