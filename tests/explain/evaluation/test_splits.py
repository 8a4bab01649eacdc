"""Ground-truth scores split by saturation regime and peak margin, on hand-made arrays."""

from __future__ import annotations

import numpy as np
import pytest

from data.errors import InputError
from explain.evaluation import table as keys
from explain.evaluation.splits import MARGIN_BINS, SATURATION_BINS, bin_index, split_scores


def test_saturation_bins_by_hand() -> None:
    ratio = np.array([0.0, 0.49, 0.5, 0.99, 1.0, 7.0, np.nan, -0.1])
    np.testing.assert_array_equal(bin_index(ratio, SATURATION_BINS), [0, 0, 1, 1, 2, 2, -1, -1])
    assert [b.name for b in SATURATION_BINS] == ["linear", "transitional", "saturated"]


def test_margin_bins_by_hand() -> None:
    margin = np.array([0.04, 0.05, 0.0999, 0.1, 0.2499, 0.25, 0.9, np.nan])
    np.testing.assert_array_equal(bin_index(margin, MARGIN_BINS), [-1, 0, 0, 1, 1, 2, 2, -1])
    with pytest.raises(InputError, match=r"\(sample,\)"):
        bin_index(np.zeros((2, 2)), MARGIN_BINS)


# six designs: |w|/omega_s and peak margins; design 4 has an ambiguous peak (margin 3%)
RATIO = np.array([0.2, 0.3, 0.7, 1.5, 0.4, 2.0])
MARGIN = np.array([0.06, 0.5, 0.12, 0.3, 0.03, 0.08])
# two methods; design 4's ground-truth scores are NaN as evaluate() leaves them
RHO = np.array([[0.1, 0.3, 0.5, 0.7, np.nan, 0.9], [-0.2, 0.0, 0.2, 0.4, np.nan, 0.6]])
PER_SAMPLE = {
    keys.GT_SPEARMAN_INPUT: RHO,
    keys.EB_MODEL_IG: RHO / 2,
    keys.EB_IG_TRUTH: np.tile([0.5, 0.5, 0.6, 0.6, np.nan, 0.6], (2, 1)),
    keys.EB_CEILING: np.array([[1.0] * 6, [0.4] * 6]),
    "road_combined": np.zeros((2, 6)),  # not a ground-truth score: not split
}


def test_split_by_saturation_counts_and_means() -> None:
    split = split_scores(PER_SAMPLE, ["a", "b"], "saturation", RATIO, MARGIN)
    # linear: designs 0, 1 (design 4 is linear too, but left out); transitional: 2;
    # saturated: 3 and 5
    assert split.designs == {"linear": 2, "transitional": 1, "saturated": 2}
    assert split.scores == keys.SPLIT_SCORES
    a, b = split.table["a"], split.table["b"]
    assert a["linear"][keys.GT_SPEARMAN_INPUT] == pytest.approx(0.2)
    assert a["transitional"][keys.GT_SPEARMAN_INPUT] == pytest.approx(0.5)
    assert a["saturated"][keys.GT_SPEARMAN_INPUT] == pytest.approx(0.8)
    assert b["saturated"][keys.GT_SPEARMAN_INPUT] == pytest.approx(0.5)
    assert b["linear"][keys.EB_MODEL_IG] == pytest.approx(-0.05)
    assert a["linear"][keys.EB_IG_TRUTH] == pytest.approx(0.5)
    assert b["saturated"][keys.EB_CEILING] == pytest.approx(0.4)
    assert "road_combined" not in a["linear"]


def test_split_by_peak_margin_leaves_out_ambiguous_peaks() -> None:
    split = split_scores(PER_SAMPLE, ["a", "b"], "peak_margin", MARGIN, MARGIN)
    # 5-10%: designs 0 and 5; 10-25%: 2; >= 25%: 1 and 3; design 4 (3%) in none
    assert split.designs == {"5–10%": 2, "10–25%": 1, "≥ 25%": 2}
    assert split.table["a"]["5–10%"][keys.GT_SPEARMAN_INPUT] == pytest.approx(0.5)
    assert split.table["a"]["≥ 25%"][keys.GT_SPEARMAN_INPUT] == pytest.approx(0.5)
    assert split.table["b"]["10–25%"][keys.GT_SPEARMAN_INPUT] == pytest.approx(0.2)
    as_json = split.as_dict()
    assert as_json["bins"][-1] == {"name": "≥ 25%", "low": 0.25, "high": None}


def test_an_empty_bin_has_no_mean() -> None:
    split = split_scores(PER_SAMPLE, ["a", "b"], "saturation", np.full(6, 0.1), MARGIN)
    assert split.designs == {"linear": 5, "transitional": 0, "saturated": 0}
    assert np.isnan(split.table["a"]["saturated"][keys.GT_SPEARMAN_INPUT])
    with pytest.raises(InputError, match="no default bins"):
        split_scores(PER_SAMPLE, ["a", "b"], "wall", RATIO, MARGIN)
