"""Positions of every grid of a maps Dataset (``with_positions``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data.errors import InputError
from explain.api import explain
from explain.io import with_positions


def test_every_grid_gets_its_cell_centres(tiny_model) -> None:
    ds = explain(tiny_model, 0.05 * torch.randn(2, 16, 16), methods=["hirescam", "polycam+"])
    ys, xs = (np.arange(16) + 0.5) * 0.25, 3.0 + (np.arange(16) + 0.5) * 0.5
    placed = with_positions(ds, ys, xs)
    np.testing.assert_array_equal(placed["y"].values, ys)
    np.testing.assert_array_equal(placed["x"].values, xs)
    # the 8x8 layer: a cell covers 2x2 input cells, its centre between theirs
    np.testing.assert_allclose(placed["y_layer"].values, (np.arange(8) + 0.5) * 0.5)
    np.testing.assert_allclose(placed["x_layer"].values, 3.0 + (np.arange(8) + 0.5) * 1.0)
    np.testing.assert_array_equal(placed["x_polycam"].values, xs)  # Poly-CAM at 16x16
    for name in ("y", "x", "y_layer", "x_layer", "y_polycam", "x_polycam"):
        assert placed[name].attrs["units"] == "delta"
        assert "cell centre" in placed[name].attrs["long_name"]
    with pytest.raises(InputError, match="15 x positions for a grid of 16"):
        with_positions(ds, ys, xs[:15])
