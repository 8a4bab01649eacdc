"""Regions of hand-made maps: boxes, areas, centroids, ranks, shares and signs by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from data.errors import InputError
from explain.regions import Region, find_regions

NY, NX, D = 8, 12, 0.25
YS = (np.arange(NY) + 0.5) * D  # cell centres 0.125, 0.375, ... delta
XS = (np.arange(NX) + 0.5) * D


@pytest.fixture
def heights() -> np.ndarray:
    """``h[r, c] = 0.01 c + 0.001 r`` delta: every cell's height is known by its index."""
    r, c = np.mgrid[:NY, :NX]
    return 0.01 * c + 0.001 * r


@pytest.fixture
def blobs() -> np.ndarray:
    """A: +1 on rows 1-2, columns 2-4 (sum 6); B: -2 on rows 5-6, columns 7-8 (sum -8);
    a single-cell speck of +1.5 at (4, 10); 0.1 background in two corners (|map| sum 15.7)."""
    a = np.zeros((NY, NX))
    a[1:3, 2:5] = 1.0
    a[5:7, 7:9] = -2.0
    a[4, 10] = 1.5
    a[0, 0] = a[7, 11] = 0.1
    return a


def test_two_blobs_ranked_by_absolute_sum(blobs: np.ndarray, heights: np.ndarray) -> None:
    b, a = find_regions(blobs, heights, YS, XS)
    assert [b.rank, a.rank] == [1, 2]
    assert (b.sign, b.attribution, b.cells) == (-1, -8.0, 4)
    assert (a.sign, a.attribution, a.cells) == (1, 6.0, 6)
    assert b.share == pytest.approx(8 / 15.7)
    assert a.share == pytest.approx(6 / 15.7)


def test_boxes_areas_and_centroids_in_delta(blobs: np.ndarray, heights: np.ndarray) -> None:
    b, a = find_regions(blobs, heights, YS, XS)
    # outer cell edges: row 1 starts at 0.25, row 2 ends at 0.75; columns 2..4 -> 0.5..1.25
    assert a.box == pytest.approx((0.25, 0.75, 0.5, 1.25))
    assert b.box == pytest.approx((1.25, 1.75, 1.75, 2.25))
    assert a.area == pytest.approx(6 * D * D)
    assert b.area == pytest.approx(4 * D * D)
    assert (a.centroid_y, a.centroid_x) == pytest.approx((0.5, 0.875))
    assert (b.centroid_y, b.centroid_x) == pytest.approx((1.5, 2.0))


def test_heights_of_a_region(blobs: np.ndarray, heights: np.ndarray) -> None:
    _, a = find_regions(blobs, heights, YS, XS)
    assert a.peak_height == pytest.approx(0.01 * 4 + 0.001 * 2)
    assert a.mean_height == pytest.approx(0.01 * 3 + 0.001 * 1.5)
    expected = np.zeros((NY, NX), dtype=bool)
    expected[1:3, 2:5] = True
    np.testing.assert_array_equal(a.mask, expected)


def test_centroid_is_weighted_by_the_magnitude(heights: np.ndarray) -> None:
    a = np.zeros((NY, NX))
    a[0, 0], a[0, 1] = 1.0, 3.0
    (region,) = find_regions(a, heights, YS, XS, threshold=0.3)
    assert region.centroid_x == pytest.approx((1 * 0.125 + 3 * 0.375) / 4)
    assert region.centroid_y == pytest.approx(0.125)


def test_min_cells_drops_the_single_cell_speck(blobs: np.ndarray, heights: np.ndarray) -> None:
    assert len(find_regions(blobs, heights, YS, XS)) == 2
    regions = find_regions(blobs, heights, YS, XS, min_cells=1)
    assert [r.attribution for r in regions] == [-8.0, 6.0, 1.5]
    assert regions[2].box == pytest.approx((1.0, 1.25, 2.5, 2.75))
    assert [r.rank for r in regions] == [1, 2, 3]


def test_max_regions_keeps_the_first(blobs: np.ndarray, heights: np.ndarray) -> None:
    (only,) = find_regions(blobs, heights, YS, XS, max_regions=1)
    assert (only.rank, only.attribution) == (1, -8.0)


def test_threshold_is_a_fraction_of_the_peak(blobs: np.ndarray, heights: np.ndarray) -> None:
    # peak |map| = 2: at 0.5 the +1 cells are in (>=), at 0.6 (cut 1.2) they are out
    assert [r.attribution for r in find_regions(blobs, heights, YS, XS, threshold=0.6)] == [-8.0]
    found = find_regions(blobs, heights, YS, XS, threshold=0.75, min_cells=1)
    assert [r.attribution for r in found] == [-8.0, 1.5]
    # at 0.04 the background 0.1 joins (min_cells=1), still separate from the blobs
    found = find_regions(blobs, heights, YS, XS, threshold=0.04, min_cells=1)
    assert sorted(r.attribution for r in found) == pytest.approx([-8.0, 0.1, 0.1, 1.5, 6.0])


def test_diagonal_neighbours_connect_and_the_span_does_not_wrap(heights: np.ndarray) -> None:
    a = np.zeros((NY, NX))
    a[2, 2] = a[3, 3] = 1.0  # corner to corner: one region (8-connectivity)
    a[0, 8] = a[NY - 1, 8] = 1.0  # across the spanwise edge: two single cells
    regions = find_regions(a, heights, YS, XS, min_cells=1)
    assert sorted(r.cells for r in regions) == [1, 1, 2]


def test_opposite_signs_never_share_a_region(heights: np.ndarray) -> None:
    a = np.zeros((NY, NX))
    a[3, 3:5] = 1.0
    a[3, 5:7] = -1.0
    regions = find_regions(a, heights, YS, XS)
    assert sorted((r.sign, r.cells) for r in regions) == [(-1, 2), (1, 2)]


def test_all_zero_map_has_no_region(heights: np.ndarray) -> None:
    assert find_regions(np.zeros((NY, NX)), heights, YS, XS) == []


def test_row_is_flat_and_serialisable(blobs: np.ndarray, heights: np.ndarray) -> None:
    row = find_regions(blobs, heights, YS, XS)[1].row()
    assert "mask" not in row
    assert (row["box_y0"], row["box_y1"], row["box_x0"], row["box_x1"]) == pytest.approx(
        (0.25, 0.75, 0.5, 1.25)
    )
    assert json.loads(json.dumps(row))["cells"] == 6


def test_regions_compare_without_the_mask(blobs: np.ndarray, heights: np.ndarray) -> None:
    first, second = find_regions(blobs, heights, YS, XS), find_regions(blobs, heights, YS, XS)
    assert first == second
    assert isinstance(first[0], Region)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"attribution": np.full((NY, NX), np.nan)}, "NaN or Inf"),
        ({"heights": np.zeros((NY, NX + 1))}, "heights have shape"),
        ({"ys": YS[:-1]}, "ys and xs have lengths"),
        ({"xs": XS[:-1]}, "ys and xs have lengths"),
        ({"attribution": np.zeros(NX)}, "attribution must be"),
        ({"xs": XS[::-1]}, "xs must be increasing"),
        ({"attribution": np.zeros((NY, NX)), "ys": YS[[0, 1, 3, 4, 5, 6, 7, 7]]}, "ys must be"),
        ({"threshold": 0.0}, "threshold"),
        ({"min_cells": 0}, "min_cells"),
    ],
)
def test_bad_inputs_give_one_line(
    blobs: np.ndarray, heights: np.ndarray, change: dict, message: str
) -> None:
    kwargs = {"attribution": blobs, "heights": heights, "ys": YS, "xs": XS, **change}
    with pytest.raises(InputError, match=message) as info:
        find_regions(**kwargs)
    assert "\n" not in str(info.value)
