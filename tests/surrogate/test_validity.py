"""Conformal intervals, binned errors, penultimate features and the domain of validity."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from data.campaign import simulate_campaign
from data.errors import InputError
from surrogate.network import RoughnessCNN
from surrogate.normaliser import PhysicalSurrogate
from surrogate.transport import TransportNet
from surrogate.validity import (
    DomainCheck,
    binned_errors,
    conformal_halfwidth,
    conformal_interval,
    error_near,
    in_domain,
    ledoit_wolf,
    penultimate_features,
)

SMALL_TRANSPORT = {"channels": 2, "span": 15, "reach": 20, "wake": 4, "hidden": 8}


def test_conformal_interval_covers_at_the_level() -> None:
    rng = np.random.default_rng(0)
    calibration = rng.standard_t(4, size=2_000) * 0.3 + 0.05  # heavy tails, a bias
    test = rng.standard_t(4, size=20_000) * 0.3 + 0.05
    q = conformal_halfwidth(calibration, level=0.9)
    coverage = np.mean(np.abs(test) <= q)
    assert 0.885 <= coverage <= 0.915, coverage


def test_conformal_rank_by_hand() -> None:
    residuals = np.array([0.3, -0.9, 0.1, -0.5, 0.7, 0.2, -0.4, 0.8, -0.6])
    assert conformal_halfwidth(residuals, 0.9) == 0.9  # rank ceil(10 * 0.9) = 9 of 9: the max
    assert conformal_halfwidth(residuals, 0.5) == 0.5  # rank ceil(5) = 5
    assert conformal_halfwidth(residuals[:4], 0.9) == math.inf  # rank ceil(4.5) = 5 > 4
    assert conformal_halfwidth(np.arange(1.0, 20.0), 0.9) == 18.0  # rank ceil(18) = 18 of 19
    interval = conformal_interval(2.0, residuals, 0.9)
    assert (interval.low, interval.high, interval.halfwidth) == pytest.approx((1.1, 2.9, 0.9))
    assert (interval.level, interval.calibration_samples) == (0.9, 9)


@pytest.mark.parametrize(
    ("residuals", "level", "match"),
    [([0.1], 0.0, "level"), ([0.1], 1.0, "level"), ([], 0.9, "residuals"), ([np.nan], 0.9, "NaN")],
)
def test_conformal_rejects_bad_input(residuals: list[float], level: float, match: str) -> None:
    with pytest.raises(InputError, match=match):
        conformal_halfwidth(residuals, level)


def _hand_made_errors() -> tuple[np.ndarray, np.ndarray]:
    """Predictions 1..10 (shuffled): bin 1..5 has residuals [1, -1, 1, -1, 2], bin 6..10 -0.5."""
    predicted = np.arange(1.0, 11.0)
    residual = np.array([1, -1, 1, -1, 2, -0.5, -0.5, -0.5, -0.5, -0.5])
    order = np.random.default_rng(3).permutation(10)
    return predicted[order], (predicted - residual)[order]


def test_binned_errors_by_hand() -> None:
    low, high = binned_errors(*_hand_made_errors(), bins=2)
    assert (low["lo"], low["hi"], low["n"]) == (1.0, 5.0, 5)
    assert low["bias"] == pytest.approx(0.4)
    assert low["rmse"] == pytest.approx(math.sqrt(8 / 5))
    assert low["abs_q90"] == pytest.approx(1.6)  # |r| sorted 1,1,1,1,2: position 3.6
    assert (high["lo"], high["hi"], high["n"]) == (6.0, 10.0, 5)
    assert (high["bias"], high["rmse"], high["abs_q90"]) == pytest.approx((-0.5, 0.5, 0.5))
    json.dumps([low, high])
    with pytest.raises(InputError, match="simulated"):
        binned_errors([1.0, 2.0], [1.0])
    with pytest.raises(InputError, match="bins"):
        binned_errors([1.0, 2.0], [1.0, 2.0], bins=3)


@pytest.mark.parametrize(
    ("prediction", "bin_lo", "extrapolated"),
    [(3.0, 1.0, False), (5.0, 1.0, False), (5.5, 6.0, False), (0.0, 1.0, True), (11.0, 6.0, True)],
)
def test_error_near_clamps_and_flags(prediction: float, bin_lo: float, extrapolated: bool) -> None:
    row = error_near(binned_errors(*_hand_made_errors(), bins=2), prediction)
    assert (row["lo"], row["extrapolated"]) == (bin_lo, extrapolated)


def _cnn() -> PhysicalSurrogate:
    torch.manual_seed(0)
    model = PhysicalSurrogate(RoughnessCNN(widths=(4, 8), convs_per_stage=1))
    model.input_norm.set_statistics(0.0, 0.02)  # campaign heights are ~0.02 delta
    return model.eval()


def test_penultimate_features_of_the_cnn_by_hand() -> None:
    model = _cnn()
    x = torch.randn(7, 1, 16, 16) * 0.02
    model.train()  # the features are taken in eval mode and the mode is restored
    features = penultimate_features(model, x, batch_size=3)
    assert model.training
    assert not model.network.fc._forward_pre_hooks
    assert all(p.grad is None for p in model.parameters())
    net = model.eval().network
    with torch.no_grad():  # fc's input: the pooled last stage
        expected = net.pool(net.features(net.coords(model.input_norm(x)))).flatten(1)
    assert features.shape == (7, 8)
    np.testing.assert_allclose(features, expected.double().numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(penultimate_features(model, x[:, 0].numpy()), features, rtol=1e-5)


@pytest.mark.parametrize(
    ("options", "width"),
    [({}, 8), ({"monotone": True, "even": True}, 2)],  # head.2's input; MonotoneHead's peaks
)
def test_penultimate_features_of_the_transport_net(options: dict, width: int) -> None:
    model = PhysicalSurrogate(TransportNet(**SMALL_TRANSPORT, **options))
    assert penultimate_features(model, torch.randn(5, 1, 16, 16)).shape == (5, width)


def _campaign(seed: int) -> tuple[np.ndarray, float, float]:
    ds = simulate_campaign(400, size=16, seed=seed, progress=False)
    dy, dx = (float(np.diff(ds[c].values).mean()) for c in ("y", "x"))
    return ds.roughness.values, dy, dx


@pytest.fixture(scope="module")
def domain() -> dict:
    """Fitted on campaign seed 0, threshold from seed 2's features, checked on seed 1."""
    model = _cnn()
    train, dy, dx = _campaign(0)
    other, _, _ = _campaign(1)
    calibration, _, _ = _campaign(2)
    check = DomainCheck().fit(
        train,
        dy,
        dx,
        penultimate_features(model, train),
        penultimate_features(model, calibration),
    )
    return {"check": check, "model": model, "other": other, "dy": dy, "dx": dx}


def test_designs_like_the_training_ones_pass(domain: dict) -> None:
    other = domain["other"]
    features = penultimate_features(domain["model"], other)
    findings = domain["check"].check(other, domain["dy"], domain["dx"], features)
    assert len(findings) == 400
    assert len(findings[0]) == 4 + 6 + 1  # grid, spacing, statistics, feature distance
    assert np.mean([in_domain(row) for row in findings]) >= 0.95


def _out_of_domain(other: np.ndarray) -> dict[str, tuple[np.ndarray, float, set[str]]]:
    """name -> (heights, spacing factor, checks that must fail)."""
    cells = np.add.outer(np.arange(16), np.arange(16))
    spike = np.zeros((16, 16))
    spike[8, 8] = 0.4
    return {
        "checkerboard": (0.018 * (-1.0) ** cells, 1.0, {"fine-scale fraction"}),
        "spike": (spike, 1.0, {"max height", "max slope"}),
        "all zeros": (np.zeros((16, 16)), 1.0, {"max height", "min height", "rms height"}),
        "heights x5": (5 * other[0], 1.0, {"max height", "rms height", "max slope"}),
        "another spacing": (other[1], 0.5, {"spacing y", "spacing x"}),
        "another grid size": (np.kron(other[2], np.ones((2, 2))), 1.0, {"grid y", "grid x"}),
    }


@pytest.mark.parametrize(
    "name",
    ["checkerboard", "spike", "all zeros", "heights x5", "another spacing", "another grid size"],
)
def test_out_of_domain_designs_fail_with_a_reason(domain: dict, name: str) -> None:
    heights, factor, expected = _out_of_domain(domain["other"])[name]
    # features for the other grid are left out: the network need not take that grid
    features = (
        None if heights.shape != (16, 16) else penultimate_features(domain["model"], heights[None])
    )
    check: DomainCheck = domain["check"]
    (findings,) = check.check(heights, domain["dy"] * factor, domain["dx"] * factor, features)
    failed = {f.check: f for f in findings if not f.passed}
    assert not in_domain(findings)
    assert expected <= set(failed), sorted(failed)
    for check_name, finding in failed.items():
        assert finding.message.startswith(check_name), finding.message
        assert "\n" not in finding.message
        assert not finding.low <= finding.value <= finding.high
    if name == "heights x5":
        assert "x the training maximum" in failed["rms height"].message


def test_another_grid_is_a_failed_finding_not_an_error() -> None:
    rng = np.random.default_rng(0)
    check = DomainCheck().fit(rng.normal(0, 0.02, (10, 64, 64)), 0.25, 0.25)
    (findings,) = check.check(rng.normal(0, 0.02, (128, 128)), 0.25, 0.25)
    grid = [f for f in findings if f.check.startswith("grid")]
    assert [f.passed for f in grid] == [False, False]
    assert grid[0].message == "grid y 128 cells, the training grid is (64, 64) (y, x)"


def test_round_trip_through_json_gives_the_same_findings(domain: dict) -> None:
    check: DomainCheck = domain["check"]
    loaded = DomainCheck.from_dict(json.loads(json.dumps(check.to_dict())))
    heights = np.concatenate([domain["other"][:20], 5 * domain["other"][:2]])
    features = penultimate_features(domain["model"], heights)
    args = (heights, domain["dy"], domain["dx"], features)
    assert loaded.check(*args) == check.check(*args)
    with pytest.raises(InputError, match="lacks"):
        DomainCheck.from_dict({"grid": [16, 16]})


def test_ledoit_wolf_matches_its_definition() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 5)) @ rng.normal(size=(5, 5))
    covariance, weight = ledoit_wolf(x)
    centred = x - x.mean(axis=0)
    s = centred.T @ centred / 30
    mu = np.trace(s) / 5
    d2 = np.sum((s - mu * np.eye(5)) ** 2)
    b2 = sum(np.sum((np.outer(v, v) - s) ** 2) for v in centred) / 30**2
    assert weight == pytest.approx(min(b2, d2) / d2)
    assert 0 < weight < 1
    np.testing.assert_allclose(covariance, (1 - weight) * s + weight * mu * np.eye(5))


def test_feature_distance_is_mahalanobis_and_flags_the_far() -> None:
    rng = np.random.default_rng(2)
    heights = rng.normal(0, 0.02, (200, 8, 8))
    features = rng.normal(size=(200, 3)) * [1.0, 2.0, 0.5]
    check = DomainCheck().fit(heights, 1.0, 1.0, features, quantile=0.99)
    assert check.features is not None
    assert check.features["calibration"] == "training"
    far = np.array([0.0, 0.0, 10.0])
    inverse = np.linalg.inv(np.asarray(check.features["covariance"]))
    offset = far - features.mean(axis=0)
    assert check.distance(far)[0] == pytest.approx(math.sqrt(offset @ inverse @ offset))
    finding = check.check(heights[0], 1.0, 1.0, far)[0][-1]
    assert (finding.check, finding.passed) == ("feature distance", False)
    assert "x the threshold" in finding.message
    unmeasured = check.check(heights[0], 1.0, 1.0)[0][-1]
    assert not unmeasured.passed
    assert "not measured" in unmeasured.message


def test_bad_input_is_an_input_error() -> None:
    with pytest.raises(InputError, match="not fitted"):
        DomainCheck().check(np.zeros((4, 4)), 1.0, 1.0)
    with pytest.raises(InputError, match="heights"):
        DomainCheck().fit(np.full((3, 4, 4), np.nan), 1.0, 1.0)
    with pytest.raises(InputError, match="spacing"):
        DomainCheck().fit(np.zeros((3, 4, 4)), 0.0, 1.0)
    with pytest.raises(InputError, match="rows"):
        DomainCheck().fit(np.zeros((3, 4, 4)), 1.0, 1.0, np.zeros((2, 2)))
