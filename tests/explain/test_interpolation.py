"""The alignment rule of layer maps on the input grid, by hand."""

from __future__ import annotations

import pytest
import torch

from data.errors import InputError
from explain.interpolation import upsample

M = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])  # (1, 2, 2)


def test_none_is_cell_aligned_blocks() -> None:
    out = upsample(M, (4, 4), "none")
    expected = torch.tensor([[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4.0]])
    torch.testing.assert_close(out[0], expected)
    torch.testing.assert_close(upsample(M, (4, 4), "nearest"), out)
    assert out.sum().item() == pytest.approx(4 * M.sum().item())  # block sums preserved


def test_bilinear_interpolates_between_block_centres() -> None:
    out = upsample(M, (4, 4), "bilinear")[0]
    # input cell i has centre (i + 0.5) / 2 - 0.5 in layer cells: -0.25, 0.25, 0.75, 1.25
    weights = torch.tensor([[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1.0]])
    torch.testing.assert_close(out, weights @ M[0] @ weights.T)


def test_bicubic_keeps_constants_and_size() -> None:
    out = upsample(torch.full((2, 4, 4), 3.0), (16, 16), "bicubic")
    assert out.shape == (2, 16, 16)
    torch.testing.assert_close(out, torch.full((2, 16, 16), 3.0))


def test_errors() -> None:
    with pytest.raises(InputError, match="unknown interpolation"):
        upsample(M, (4, 4), "lanczos")
    with pytest.raises(InputError, match="whole multiple"):
        upsample(M, (5, 4), "none")
