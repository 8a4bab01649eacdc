"""The layer sweep on the tiny model: one row per feature layer, ceilings computed independently."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from data.errors import InputError
from explain.evaluation.layers import layer_sweep
from explain.evaluation.protocol import evaluate
from explain.layers import candidate_layers

SIZE = 16


@pytest.fixture(scope="module")
def campaign() -> dict[str, np.ndarray]:
    """Twelve simulated 16x16 designs: seven with a peak margin of at least 5%."""
    from data.campaign import simulate_campaign

    ds = simulate_campaign(12, size=SIZE, seed=2)
    return {k: ds[k].values for k in ("roughness", "contribution", "peak_margin")}


@pytest.fixture(scope="module")
def sweep(tiny_campaign, campaign):
    """The tiny model of ``conftest.py`` swept on :func:`campaign`'s designs."""
    net = tiny_campaign[0]
    rows = layer_sweep(
        net, campaign["roughness"], campaign["contribution"], campaign["peak_margin"],
        ["cam", "hirescam", "layercam"], batch_size=5, chunk=64,
    )  # fmt: skip
    return net, rows


def independent_ceiling(truth: np.ndarray, h: int) -> float:
    """Block sums by reshaping, bilinear upsampling by torch, Spearman by scipy, per design."""
    k = truth.shape[-1] // h
    blocks = truth.reshape(len(truth), h, k, h, k).sum(axis=(2, 4))
    back = F.interpolate(
        torch.from_numpy(blocks)[:, None], size=truth.shape[1:], mode="bilinear",
        align_corners=False,
    )[:, 0].numpy()  # fmt: skip
    rho = [spearmanr(a.ravel(), b.ravel())[0] for a, b in zip(back, truth, strict=True)]
    return float(np.mean(rho))


def test_one_row_per_feature_layer_and_method(sweep) -> None:
    net, rows = sweep
    # the tiny model's feature maps: 16x16 in stage 1, 8x8 from stage 2's pool on; the input
    # normaliser and the coordinate layer come before any weight and are not features
    on_grid = [i.name for i in candidate_layers(net, (SIZE, SIZE)) if i.on_grid((SIZE, SIZE))]
    features = [n for n in on_grid if n.startswith("network.features")]
    assert len(features) == 16
    for method in ("hirescam", "layercam"):
        assert [r.layer for r in rows if r.method == method] == features
    # CAM needs the pooled linear head: only the last ReLU's output and the containers ending there
    cam = [r.layer for r in rows if r.method == "cam"]
    assert cam == ["network.features.stage2.6", "network.features.stage2", "network.features"]
    by = {(r.layer, r.method): r for r in rows}
    for layer in cam:  # behind global-average pooling CAM and HiResCAM are the same map
        assert by[layer, "cam"].spearman_input == pytest.approx(
            by[layer, "hirescam"].spearman_input
        )
    for r in rows:
        assert (r.height, r.width, r.cell) == ((16, 16, 1) if "stage1" in r.layer else (8, 8, 2))
        assert r.designs == 7


def test_ceilings_are_the_block_sum_computation(sweep, campaign) -> None:
    _, rows = sweep
    kept = campaign["peak_margin"] >= 0.05
    truth = campaign["contribution"][kept].astype(np.float64)
    expected = {16: 1.0, 8: independent_ceiling(truth, 8)}
    assert 0 < expected[8] < 0.9
    for r in rows:
        assert -1 <= r.ceiling <= 1
        assert r.ceiling == pytest.approx(expected[r.height], abs=1e-12)
        assert r.ceiling_fraction == pytest.approx(r.spearman_input / r.ceiling)
        if r.height == SIZE:  # the layer's grid is the input grid: both measures agree
            assert r.spearman_native == pytest.approx(r.spearman_input)


def test_sweep_scores_like_the_protocol(sweep, campaign) -> None:
    """At the default layer the sweep's Spearman is the protocol's ``gt_spearman_input``."""
    net, rows = sweep
    ev = evaluate(
        net, campaign["roughness"], ["hirescam", "layercam"], truth=campaign["contribution"],
        peak_margin=campaign["peak_margin"], target_std=0.01, steps=2, random_permutations=2,
        road_percentages=(0.5,), sanity_samples=0, batch_size=5, chunk=64, progress=False,
    )  # fmt: skip
    by = {(r.layer, r.method): r for r in rows}
    for method in ("hirescam", "layercam"):
        row = ev.table[method]
        assert by["network.features", method].spearman_input == pytest.approx(
            row["gt_spearman_input"]
        )
        assert by["network.features", method].spearman_native == pytest.approx(
            row["gt_spearman_native"]
        )
        assert by["network.features", method].ceiling == pytest.approx(row["eb_grid_ceiling"])


def test_sweep_refuses_other_methods_and_needs_clear_peaks(tiny_model, campaign) -> None:
    args = (tiny_model, campaign["roughness"], campaign["contribution"])
    with pytest.raises(InputError, match="one-pass layer methods"):
        layer_sweep(*args, campaign["peak_margin"], ["gradient"])
    with pytest.raises(InputError, match="one-pass layer methods"):
        layer_sweep(*args, campaign["peak_margin"], ["scorecam"])
    assert layer_sweep(*args, np.zeros(12), ["hirescam"]) == []
