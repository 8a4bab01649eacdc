"""What-if edits against hand computations: the taper, the smoothed heights, the random region,
and a fixed-weight linear model whose every change is ``sum(w * (h' - h))``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from data.errors import InputError
from explain.regions import find_regions
from explain.whatif import (
    finite_difference_check,
    predict,
    random_region_like,
    smooth_region,
    taper,
    what_ifs,
)

NY, NX = 8, 10


class Linear(nn.Module):
    """``f(h) = sum(w * h) + 0.3``: its gradient is ``w`` everywhere."""

    def __init__(self, w: np.ndarray, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        self.register_buffer("w", torch.as_tensor(w, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x[:, 0] * self.w).sum(dim=(1, 2)) + 0.3


@pytest.fixture
def w() -> np.ndarray:
    """Fixed weights with a strong positive blob and a weaker negative one."""
    w = np.random.default_rng(1).normal(0, 0.05, (NY, NX))
    w[1:3, 2:5] = 2.0
    w[5:7, 6:8] = -1.5
    return w


@pytest.fixture
def h() -> np.ndarray:
    return np.random.default_rng(2).uniform(0.0, 0.1, (NY, NX))


def one_cell(row: int = 4, col: int = 4, shape: tuple[int, int] = (9, 9)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[row, col] = True
    return mask


def test_taper_one_inside_zero_far_cosine_between() -> None:
    t = taper(one_cell(), cells=2)
    assert t[4, 4] == 1.0
    # along a row: d = 1, 2, 3, 4 cells -> (1 + cos(pi d / 3)) / 2
    np.testing.assert_allclose(t[4, 5:], [0.75, 0.25, 0.0, 0.0], atol=1e-12)
    assert t[5, 5] == pytest.approx(0.5 * (1 + np.cos(np.pi * np.sqrt(2) / 3)))
    assert np.all(np.diff(t[4, 4:]) <= 0)
    assert t.min() == 0.0
    assert t.max() == 1.0
    np.testing.assert_array_equal(taper(one_cell(), cells=0), one_cell().astype(float))


def test_smoothing_to_the_wall(h: np.ndarray) -> None:
    mask = np.zeros((NY, NX), dtype=bool)
    mask[3:5, 4:6] = True
    out = smooth_region(h, mask, "wall", cells=2)
    assert np.all(out[mask] == 0.0)
    far = ndimage.distance_transform_edt(~mask) >= 3
    np.testing.assert_array_equal(out[far], h[far])
    # one cell beside the region keeps a quarter of its height (w = 0.75)
    assert out[3, 6] == pytest.approx(0.25 * h[3, 6])


def test_smoothing_to_the_blurred_design(h: np.ndarray) -> None:
    mask = np.zeros((NY, NX), dtype=bool)
    mask[3:5, 4:6] = True
    out = smooth_region(h, mask, "blurred", cells=1, sigma=2.0)
    blur = ndimage.gaussian_filter(h, 2.0, mode="reflect", truncate=3.0)
    np.testing.assert_allclose(out[mask], blur[mask], atol=1e-12)
    far = ndimage.distance_transform_edt(~mask) >= 2
    np.testing.assert_array_equal(out[far], h[far])


def translated(moved: np.ndarray, mask: np.ndarray) -> bool:
    """Whether ``moved`` is ``mask`` rolled spanwise and shifted streamwise without wrapping."""
    cols, moved_cols = np.nonzero(mask.any(axis=0))[0], np.nonzero(moved.any(axis=0))[0]
    sx = moved_cols[0] - cols[0]
    return moved_cols[-1] - cols[-1] == sx and any(
        np.array_equal(np.roll(mask, (sy, sx), axis=(0, 1)), moved) for sy in range(NY)
    )


def test_random_region_same_shape_inside_and_away() -> None:
    mask = np.zeros((NY, NX), dtype=bool)
    mask[2, 1:4] = True
    mask[3, 1] = True  # an L of 4 cells
    for seed in range(10):
        moved = random_region_like(mask, np.random.default_rng(seed), avoid=mask)
        assert moved.shape == mask.shape
        assert moved.sum() == 4
        assert translated(moved, mask)
        assert not (moved & mask).any()
    first = random_region_like(mask, np.random.default_rng(5), avoid=mask)
    np.testing.assert_array_equal(first, random_region_like(mask, np.random.default_rng(5), mask))


def test_random_region_when_nothing_can_be_avoided() -> None:
    mask = np.zeros((NY, NX), dtype=bool)
    mask[:, : NX - 1] = True  # nearly the whole patch: every move overlaps
    moved = random_region_like(mask, np.random.default_rng(0), avoid=mask)
    assert moved.sum() == mask.sum()
    assert not moved[:, 0].any()  # one column downstream overlaps least (64 of 72 cells)


def test_predict_float64_mode_restored_no_grad(w: np.ndarray, h: np.ndarray) -> None:
    model = Linear(w).train()
    y = predict(model, np.stack([h, 2 * h]))
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, [(w * h).sum() + 0.3, 2 * (w * h).sum() + 0.3], rtol=1e-12)
    assert model.training
    np.testing.assert_array_equal(predict(model, np.stack([h])[:, None]), y[:1])


def test_what_ifs_change_is_the_hand_computed_sum(
    w: np.ndarray, h: np.ndarray, counting_model: type
) -> None:
    ys, xs = (np.arange(NY) + 0.5) * 0.25, (np.arange(NX) + 0.5) * 0.25
    regions = find_regions(w, h, ys, xs)
    assert [r.sign for r in regions] == [1, -1]
    model = counting_model(Linear(w))
    rows = what_ifs(model, h, regions, np.random.default_rng(3), cells=2)
    assert model.sizes == [1 + 2 * 3]  # the design and six edits in one call
    assert [(r["rank"], r["edit"], r["to"]) for r in rows] == [
        (1, "region", "wall"), (1, "region", "blurred"), (1, "random", "wall"),
        (2, "region", "wall"), (2, "region", "blurred"), (2, "random", "wall"),
    ]  # fmt: skip
    # the random regions, drawn again in the same order from the same seed
    rng = np.random.default_rng(3)
    avoid = regions[0].mask | regions[1].mask
    for i, region in enumerate(regions):
        edited = [
            smooth_region(h, region.mask, "wall"),
            smooth_region(h, region.mask, "blurred"),
            smooth_region(h, random_region_like(region.mask, rng, avoid=avoid), "wall"),
        ]
        for row, new in zip(rows[3 * i : 3 * i + 3], edited, strict=True):
            assert row["before"] == pytest.approx((w * h).sum() + 0.3, abs=1e-12)
            assert row["change"] == pytest.approx((w * (new - h)).sum(), abs=1e-6)
            assert row["after"] - row["before"] == pytest.approx(row["change"], abs=1e-12)
            assert row["cells"] == region.cells
    # smoothing the strong positive region lowers the prediction more than a random one
    assert rows[0]["change"] < rows[2]["change"]


def test_what_ifs_of_no_region_calls_nothing(w: np.ndarray, h: np.ndarray) -> None:
    assert what_ifs(Linear(w), h, [], np.random.default_rng(0)) == []


def test_finite_difference_of_a_linear_model(w: np.ndarray, h: np.ndarray) -> None:
    mask = np.zeros((NY, NX), dtype=bool)
    mask[1:3, 2:5] = True
    check = finite_difference_check(Linear(w), h, w, mask)
    assert check["ratio"] == pytest.approx(1.0, abs=1e-4)
    assert check["first_order"] == pytest.approx(w[mask].sum())
    assert check["relative_error"] < 1e-4
    # a float32 model, the usual case, still agrees to float32 precision
    check = finite_difference_check(Linear(w, torch.float32), h, w, mask)
    assert check["ratio"] == pytest.approx(1.0, abs=1e-3)
    # a map twice the gradient claims twice the sensitivity
    assert finite_difference_check(Linear(w), h, 2 * w, mask)["ratio"] == pytest.approx(2.0)


def test_finite_difference_of_a_flat_model_is_nan(h: np.ndarray) -> None:
    check = finite_difference_check(Linear(np.zeros((NY, NX))), h, np.ones((NY, NX)), h > 0)
    assert check["finite_difference"] == 0.0
    assert np.isnan(check["ratio"])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda h: taper(np.zeros((NY, NX), dtype=bool)), "selects no cell"),
        (lambda h: taper(np.ones((NY, NX))), "must be a bool array"),
        (lambda h: taper(h > 0, cells=-1), "cells must be"),
        (lambda h: smooth_region(h, h > 0, "flat"), "unknown smoothing target"),
        (lambda h: smooth_region(h, np.ones((2, 2), dtype=bool)), "expected the heights'"),
        (lambda h: smooth_region(np.full((2, 2), np.nan), np.ones((2, 2), bool)), "NaN"),
        (lambda h: finite_difference_check(Linear(h), h, h[:2], h > 0), "attribution has"),
        (lambda h: finite_difference_check(Linear(h), h, h, h > 0, epsilon=0.0), "epsilon"),
    ],
)
def test_bad_inputs_give_one_line(h: np.ndarray, call, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        call(h)
    assert "\n" not in str(info.value)
