"""Ground-truth scores: hand-worked small grids, perfect/reversed/random maps, Quantus."""

from __future__ import annotations

import numpy as np
import pytest

from data.errors import InputError
from explain.evaluation.groundtruth import (
    block_sum,
    grid_ceiling,
    ground_truth_scores,
    iou_sweep,
    mask_size,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    truth_mask,
)
from explain.evaluation.similarity import spearman

# cells, row-major index:  0 1 2 / 3 4 5 / 6 7 8
TRUTH3 = np.array([[[0.0, 1.0, -4.0], [2.0, 5.0, 0.5], [-0.5, 3.0, 0.2]]])
MAP3 = np.array([[[0.1, 0.2, 0.9], [0.0, 0.6, -0.3], [0.4, 0.0, 0.3]]])


def cells(mask: np.ndarray) -> list[int]:
    return np.flatnonzero(mask[0]).tolist()


def test_mask_size_rounds_half_up_and_keeps_one_cell() -> None:
    assert mask_size(0.1, 16) == 2  # 1.6
    assert mask_size(0.2, 16) == 3  # 3.2
    assert mask_size(0.25, 10) == 3  # 2.5, half up (Python's round would give 2)
    assert mask_size(0.35, 10) == 4  # 0.35 * 10 = 3.4999999999999996 in floating point
    assert mask_size(0.01, 9) == 1  # 0.09, at least one cell
    with pytest.raises(InputError, match="fraction"):
        mask_size(0.0, 9)


def test_truth_mask_by_hand() -> None:
    # K = round(0.34 * 9) = 3. |truth| ranks 5 (4), 4 (2), 3 (7); positive truth 5 (4), 3 (7), 2 (3)
    assert cells(truth_mask(TRUTH3, 0.34, "abs")) == [2, 4, 7]
    assert cells(truth_mask(TRUTH3, 0.34, "positive")) == [3, 4, 7]
    # K = round(0.2 * 9) = 2
    assert cells(truth_mask(TRUTH3, 0.2, "abs")) == [2, 4]
    assert cells(truth_mask(TRUTH3, 0.2, "positive")) == [4, 7]


def test_truth_mask_ties_and_too_few_positive_cells() -> None:
    ones = np.ones((1, 2, 2))
    assert cells(truth_mask(ones, 0.5)) == [0, 1]  # tie: lower row-major index first
    assert cells(truth_mask(-ones, 0.5, "abs")) == [0, 1]
    few = np.array([[[1.0, -1.0], [0.0, -2.0]]])
    assert cells(truth_mask(few, 0.5, "positive")) == [0]  # one positive cell for K = 2
    assert cells(truth_mask(few, 0.5, "abs")) == [0, 3]  # |2| (3), then the tie |1|: cell 0
    assert not truth_mask(-ones, 0.5, "positive").any()
    with pytest.raises(InputError, match="kind"):
        truth_mask(ones, 0.5, "negative")


def test_metrics_by_hand_abs_mask() -> None:
    mask = truth_mask(TRUTH3, 0.34, "abs")  # cells {2, 4, 7}
    # positive mass 0.1+0.2+0.9+0.6+0.4+0.3 = 2.5; inside 0.9 (2) + 0.6 (4) + 0.0 (7) = 1.5
    np.testing.assert_allclose(relevance_mass_accuracy(MAP3, mask), [0.6])
    # top-3 of the map: 0.9 (2), 0.6 (4), 0.4 (6); two of them in the mask
    np.testing.assert_allclose(relevance_rank_accuracy(MAP3, mask), [2 / 3])
    assert pointing_game(MAP3, mask).tolist() == [True]  # max 0.9 at cell 2
    # max 0.9. tau 0.1: >= 0.09 is {0,1,2,4,6,8}, inter {2,4}, union {0,1,2,4,6,7,8} -> 2/7
    # tau 0.3: >= 0.27 is {2,4,6,8} -> 2/5; tau 0.5: >= 0.45 is {2,4} -> 2/3; tau 0.9: {2} -> 1/3
    got = iou_sweep(MAP3, mask, [0.1, 0.3, 0.5, 0.9])
    np.testing.assert_allclose(got, [[2 / 7, 2 / 5, 2 / 3, 1 / 3]])


def test_metrics_by_hand_positive_mask() -> None:
    mask = truth_mask(TRUTH3, 0.34, "positive")  # cells {3, 4, 7}
    np.testing.assert_allclose(relevance_mass_accuracy(MAP3, mask), [0.6 / 2.5])
    np.testing.assert_allclose(relevance_rank_accuracy(MAP3, mask), [1 / 3])  # only cell 4
    assert pointing_game(MAP3, mask).tolist() == [False]
    # tau 0.5: {2, 4} vs {3, 4, 7}: inter 1, union 4
    np.testing.assert_allclose(iou_sweep(MAP3, mask, [0.5]), [[0.25]])


def test_ties_and_degenerate_maps() -> None:
    mask = np.array([[[True, False], [False, True]]])
    # top-2 of [1, 1, 1, 0]: the value 1 fills both places, shared by three cells, one in the mask
    np.testing.assert_allclose(
        relevance_rank_accuracy(np.array([[[1.0, 1], [1, 0]]]), mask), [1 / 3]
    )
    flat4 = np.zeros((1, 4, 4))
    mask4 = truth_mask(np.arange(16.0).reshape(1, 4, 4), 0.25)  # 4 of 16 cells
    np.testing.assert_allclose(relevance_rank_accuracy(flat4, mask4), [0.25])  # chance level
    # a maximum shared with a cell outside the mask is a miss; a constant map is a miss
    assert pointing_game(np.array([[[1.0, 1], [0, 0]]]), mask).tolist() == [False]
    assert pointing_game(np.array([[[1.0, 0], [0, 1]]]), mask).tolist() == [True]
    assert pointing_game(flat4, mask4).tolist() == [False]
    assert pointing_game(flat4, np.zeros_like(mask4)).tolist() == [False]  # empty mask
    assert np.isnan(relevance_mass_accuracy(-np.ones((1, 2, 2)), mask)).all()  # no positive mass
    assert np.isnan(relevance_rank_accuracy(MAP3, np.zeros((1, 3, 3), bool))).all()
    np.testing.assert_array_equal(iou_sweep(-np.ones((1, 2, 2)), mask), np.zeros((1, 9)))
    np.testing.assert_array_equal(iou_sweep(flat4, mask4, [0.5]), [[0.0]])  # max 0: empty set


def test_block_sum_by_hand() -> None:
    truth = np.arange(16.0).reshape(1, 4, 4)
    np.testing.assert_array_equal(block_sum(truth, (2, 2)), [[[10, 18], [42, 50]]])
    # (1, 2): columns 0-1 and 2-3 over all rows
    np.testing.assert_array_equal(block_sum(truth, (1, 2)), [[[52, 68]]])
    np.testing.assert_array_equal(block_sum(truth, (4, 4)), truth)
    with pytest.raises(InputError, match="whole blocks"):
        block_sum(truth, (3, 2))


def test_grid_ceiling_by_hand() -> None:
    # 2x4 truth, 2x2 blocks: sums 10 and 26, repeated back ("none"): four cells tied at each.
    # Ranks of the truth 1, 2, 5, 6 / 3, 4, 7, 8 against 2.5 (x4) and 6.5 (x4): the centred
    # products sum to 2 (3.5 + 2.5 + 0.5 + 1.5 + 1.5 + 0.5 + 2.5 + 3.5) = 32, the squares to
    # 42 and 32, so rho = 32 / sqrt(42 * 32) = 4 / sqrt(21)
    truth = np.array([[[1.0, 2, 5, 6], [3, 4, 7, 8]]])
    np.testing.assert_allclose(grid_ceiling(truth, (1, 2), "none"), [4 / np.sqrt(21)])
    # on the input grid itself nothing is lost, whatever the interpolation
    rng = np.random.default_rng(3)
    fine = rng.normal(size=(3, 8, 8))
    for mode in ("none", "bilinear"):
        np.testing.assert_array_equal(grid_ceiling(fine, (8, 8), mode), np.ones(3))
        coarse = grid_ceiling(fine, (2, 2), mode)
        assert np.all((coarse > -1) & (coarse < 1))
    # a truth that is constant within blocks is recovered exactly by "none"
    blocky = np.kron(rng.normal(size=(2, 4, 4)), np.ones((2, 2)))
    np.testing.assert_allclose(grid_ceiling(blocky, (4, 4), "none"), [1.0, 1.0])


# blocks: top-left sum -5 (but max 10), top-right 4, bottom-left 0, bottom-right 5
TRUTH4 = np.array(
    [[[10.0, -5, 1, 1], [-5, -5, 1, 1], [0, 0, 2, 2], [0, 0, 2, -1]]], dtype=np.float64
)


def test_native_spearman_uses_block_sums() -> None:
    margin = np.array([1.0])
    maps_native = np.array([[[-5.0, 4], [0, 5]]])  # ranks of the block sums, not of the maxima
    scores = ground_truth_scores(TRUTH4, TRUTH4, margin, maps_native=maps_native)
    np.testing.assert_allclose(scores.spearman_native, [1.0])
    np.testing.assert_allclose(scores.spearman_input, [1.0])
    subsampled = TRUTH4[:, ::2, ::2]  # [[10, 1], [0, 2]]: another ranking
    other = ground_truth_scores(TRUTH4, TRUTH4, margin, maps_native=subsampled)
    assert other.spearman_native[0] < 1.0


def test_rectified_compares_with_the_positive_part() -> None:
    margin = np.array([1.0])
    maps_native = np.array([[[0.0, 4], [0, 5]]])  # = max(block sums, 0)
    signed = ground_truth_scores(np.abs(TRUTH4), TRUTH4, margin, maps_native=maps_native)
    rect = ground_truth_scores(
        np.maximum(TRUTH4, 0), TRUTH4, margin, maps_native=maps_native, rectified=True
    )
    np.testing.assert_allclose(rect.spearman_native, [1.0])
    np.testing.assert_allclose(rect.spearman_input, [1.0])
    assert signed.spearman_native[0] < 1.0
    np.testing.assert_allclose(
        signed.spearman_input, spearman(np.abs(TRUTH4), TRUTH4)
    )  # signed truth when not rectified


def sparse_truth(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """(n, 10, 10): k cells positive in [0.5, 1], the rest negative in [-1, -0.01]."""
    truth = -rng.uniform(0.01, 1.0, size=(n, 100))
    idx = np.argsort(rng.random((n, 100)), axis=1)[:, :k]
    np.put_along_axis(truth, idx, rng.uniform(0.5, 1.0, size=(n, k)), axis=1)
    return truth.reshape(n, 10, 10)


def test_perfect_and_reversed_maps() -> None:
    rng = np.random.default_rng(1)
    truth = sparse_truth(rng, 20, 10)  # 10 positive cells = round(0.1 * 100)
    margin = np.ones(20)
    perfect = ground_truth_scores(truth, truth, margin, fractions=(0.1,), kind="positive")
    np.testing.assert_allclose(perfect.spearman_input, 1.0)
    np.testing.assert_allclose(perfect.rma[0.1], 1.0)
    np.testing.assert_allclose(perfect.rra[0.1], 1.0)
    np.testing.assert_array_equal(perfect.pointing[0.1], 1.0)
    # tau <= 0.5: tau * max <= 0.5 <= every positive value and > every negative one
    np.testing.assert_allclose(perfect.iou[:, perfect.taus <= 0.5 + 1e-9], 1.0)
    assert (perfect.iou[:, -1] < 1.0).all()  # tau 0.9 drops some positive cells
    reverse = ground_truth_scores(-truth, truth, margin, fractions=(0.1,), kind="positive")
    np.testing.assert_allclose(reverse.spearman_input, -1.0)
    np.testing.assert_allclose(reverse.rma[0.1], 0.0)
    np.testing.assert_allclose(reverse.rra[0.1], 0.0)
    np.testing.assert_array_equal(reverse.pointing[0.1], 0.0)


def test_abs_mask_is_found_by_the_map_of_magnitudes() -> None:
    rng = np.random.default_rng(2)
    truth = rng.normal(size=(20, 10, 10))
    scores = ground_truth_scores(np.abs(truth), truth, np.ones(20), kind="abs")
    for frac in (0.05, 0.1, 0.2):
        np.testing.assert_allclose(scores.rra[frac], 1.0)
        np.testing.assert_array_equal(scores.pointing[frac], 1.0)


def test_random_maps_score_near_chance() -> None:
    rng = np.random.default_rng(3)
    n = 2000
    truth = rng.normal(size=(n, 10, 10))
    maps = rng.random((n, 10, 10))
    scores = ground_truth_scores(maps, truth, np.ones(n), fractions=(0.05, 0.1, 0.2))
    assert abs(np.mean(scores.spearman_input)) < 0.01
    for frac in (0.05, 0.1, 0.2):
        assert abs(scores.rra[frac].mean() - frac) < 0.01
        assert abs(scores.rma[frac].mean() - frac) < 0.01
        assert abs(scores.pointing[frac].mean() - frac) < 0.03
    assert scores.iou.shape == (n, 9)
    assert scores.iou_fraction == 0.1


def test_peak_margin_filter() -> None:
    rng = np.random.default_rng(4)
    truth = rng.normal(size=(6, 4, 4))
    maps = rng.normal(size=(6, 4, 4))
    native = rng.normal(size=(6, 2, 2))
    margin = np.array([0.1, 0.01, 0.2, np.nan, 0.049, 0.05])
    scores = ground_truth_scores(maps, truth, margin, maps_native=native)
    np.testing.assert_array_equal(scores.kept, [0, 2, 5])
    assert scores.excluded == 3
    keep = [0, 2, 5]
    alone = ground_truth_scores(maps[keep], truth[keep], margin[keep], maps_native=native[keep])
    assert alone.excluded == 0
    garbage = maps.copy()
    garbage[[1, 3, 4]] = 1e6 * rng.normal(size=(3, 4, 4))
    noisy = ground_truth_scores(garbage, truth, margin, maps_native=native)
    for other in (alone, noisy):
        np.testing.assert_array_equal(scores.spearman_input, other.spearman_input)
        np.testing.assert_array_equal(scores.spearman_native, other.spearman_native)
        np.testing.assert_array_equal(scores.iou, other.iou)
        for frac in (0.05, 0.1, 0.2):
            np.testing.assert_array_equal(scores.rma[frac], other.rma[frac])
            np.testing.assert_array_equal(scores.rra[frac], other.rra[frac])
            np.testing.assert_array_equal(scores.pointing[frac], other.pointing[frac])
    assert set(scores.summary()) == {
        "spearman_input",
        "spearman_native",
        *(f"{m}@{f:g}" for m in ("rma", "rra", "pointing") for f in (0.05, 0.1, 0.2)),
        "iou_mean@0.1",
    }


def test_every_sample_left_out() -> None:
    truth = np.random.default_rng(6).normal(size=(3, 4, 4))
    native = np.zeros((3, 2, 2))
    scores = ground_truth_scores(truth, truth, np.zeros(3), maps_native=native)
    assert scores.excluded == 3
    assert scores.kept.size == scores.spearman_native.size == scores.rma[0.1].size == 0
    assert scores.iou.shape == (0, 9)
    assert np.isnan(list(scores.summary().values())).all()


def test_empty_positive_mask_gives_nan() -> None:
    truth = np.stack([TRUTH3[0], -np.ones((3, 3))])
    maps = np.stack([MAP3[0], MAP3[0]])
    scores = ground_truth_scores(maps, truth, np.ones(2), kind="positive", fractions=(0.34,))
    assert np.isnan(scores.rra[0.34][1])
    assert np.isnan(scores.pointing[0.34][1])
    np.testing.assert_allclose(scores.rra[0.34][0], 1 / 3)
    assert np.isnan(scores.spearman_input[1])  # constant truth


def test_input_errors() -> None:
    truth = np.zeros((2, 4, 4))
    with pytest.raises(InputError, match="maps_input must have shape"):
        ground_truth_scores(np.zeros((2, 4, 5)), truth, np.ones(2))
    with pytest.raises(InputError, match="peak_margin"):
        ground_truth_scores(truth, truth, np.ones(3))
    with pytest.raises(InputError, match="maps_native must have 2 samples"):
        ground_truth_scores(truth, truth, np.ones(2), maps_native=np.zeros((1, 2, 2)))
    with pytest.raises(InputError, match="whole blocks"):
        ground_truth_scores(truth, truth, np.ones(2), maps_native=np.zeros((2, 3, 3)))
    with pytest.raises(InputError, match="non-finite"):
        ground_truth_scores(np.full((2, 4, 4), np.nan), truth, np.ones(2))
    with pytest.raises(InputError, match="boolean"):
        relevance_mass_accuracy(truth, truth)
    with pytest.raises(InputError, match="sample, y, x"):
        truth_mask(np.zeros((4, 4)), 0.1)


def test_against_quantus() -> None:
    quantus = pytest.importorskip("quantus")
    rng = np.random.default_rng(5)
    n = 16
    truth = rng.normal(size=(n, 8, 8))
    maps = rng.random((n, 8, 8))  # non-negative and without ties: the conventions agree
    x = rng.normal(size=(n, 1, 8, 8))
    y = np.zeros(n, dtype=int)

    def run(metric: type, a: np.ndarray, s: np.ndarray) -> np.ndarray:
        m = metric(abs=False, normalise=False, disable_warnings=True)
        out = m(model=None, x_batch=x, y_batch=y, a_batch=a[:, None], s_batch=s[:, None])
        return np.asarray(out, dtype=np.float64)

    for kind in ("abs", "positive"):
        for frac in (0.05, 0.1, 0.2):
            mask = truth_mask(truth, frac, kind)
            s = mask.astype(np.float64)
            np.testing.assert_allclose(
                relevance_mass_accuracy(maps, mask), run(quantus.RelevanceMassAccuracy, maps, s)
            )
            np.testing.assert_allclose(
                relevance_rank_accuracy(maps, mask), run(quantus.RelevanceRankAccuracy, maps, s)
            )
            np.testing.assert_array_equal(
                pointing_game(maps, mask), run(quantus.PointingGame, maps, s)
            )
    mask = truth_mask(truth, 0.1, "abs")
    s = mask.astype(np.float64)
    signed = maps - 0.5
    # Quantus sums signed values; ours counts only the positive mass
    np.testing.assert_allclose(
        relevance_mass_accuracy(signed, mask),
        run(quantus.RelevanceMassAccuracy, np.maximum(signed, 0), s),
    )
    # a maximum tied across the mask's edge: Quantus counts a hit, ours a miss
    # (Quantus refuses a constant batch, so the maximum is tied between two cells)
    tied = 0.5 * maps.reshape(n, -1)
    flat_mask = mask.reshape(n, -1)
    rows = np.arange(n)
    tied[rows, np.argmax(flat_mask, axis=1)] = 1.0
    tied[rows, np.argmin(flat_mask, axis=1)] = 1.0
    tied = tied.reshape(n, 8, 8)
    assert run(quantus.PointingGame, tied, s).all()
    assert not pointing_game(tied, mask).any()


def test_abs_masks_read_the_maps_magnitude_and_spearman_the_sign() -> None:
    rng = np.random.default_rng(5)
    truth = rng.normal(size=(8, 6, 6))
    scores = ground_truth_scores(-truth, truth, np.ones(8), fractions=(0.1,), kind="abs")
    # |-truth| ranks the cells exactly as |truth|: perfect localisation, reversed sign
    np.testing.assert_allclose(scores.rra[0.1], 1.0)
    np.testing.assert_array_equal(scores.pointing[0.1], 1.0)
    np.testing.assert_allclose(scores.spearman_input, -1.0)
