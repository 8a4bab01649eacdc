"""evaluate() end to end on a tiny model: every score present, shapes right, seeds honoured."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data.errors import InputError
from explain.evaluation import table as keys
from explain.evaluation.protocol import Evaluation, evaluate
from explain.evaluation.table import summarise

METHODS = ["hirescam", "gradient", "guided-backprop"]


@pytest.fixture(scope="module")
def setup(tiny_campaign) -> tuple[torch.nn.Module, dict]:
    return tiny_campaign


def run(setup, **kwargs):
    net, a = setup
    options = dict(
        truth=a["contribution"], peak_margin=a["peak_margin"], target_std=0.01, steps=5,
        random_permutations=10, sanity_samples=2, batch_size=4, progress=False,
    )  # fmt: skip
    options.update(kwargs)
    return evaluate(net, a["roughness"], METHODS, **options)


def test_every_score_for_every_method(setup) -> None:
    ev = run(setup, randomised_model=setup[0])
    assert ev.methods == METHODS
    for name in ("deletion_auc/smooth-wall", "insertion_auc/blurred", "road_combined", "gt_rma"):
        assert ev.per_sample[name].shape == (3, 6)
    assert ev.curves["blurred"]["deletion"].shape == (3, 6)
    assert ev.random["smooth-wall"]["deletion_auc"].shape == (6,)
    for method in METHODS:
        row = ev.table[method]
        assert {"ins-del/smooth-wall", "road_combined", "cascade_pass", "data_pass"} <= set(row)
        # the "randomised" model here is the model itself: its maps are identical
        assert row["data_spearman_abs"] == pytest.approx(1.0)
        assert row["data_pass"] == 0.0
    assert len(ev.cascade.steps) == len(ev.independent.steps)


def test_same_seed_same_scores(setup) -> None:
    a, b = run(setup, seed=3, sanity_samples=0), run(setup, seed=3, sanity_samples=0)
    for name, values in a.per_sample.items():
        np.testing.assert_array_equal(values, b.per_sample[name], err_msg=name)


def test_a_designs_scores_do_not_depend_on_the_others(setup) -> None:
    # one random stream per design: scoring designs 2..5 without 0 and 1 gives the same
    # numbers as scoring them among all six (what sharding over processes relies on); the
    # batches hold the same designs (a model's output may differ in the last bit by batch)
    net, a = setup
    whole = run(setup, seed=5, sanity_samples=0, batch_size=2)
    part = evaluate(
        net, a["roughness"][2:], METHODS, truth=a["contribution"][2:],
        peak_margin=a["peak_margin"][2:], target_std=0.01, steps=5, random_permutations=10,
        sanity_samples=0, batch_size=2, progress=False, seed=5, design_keys=[2, 3, 4, 5],
    )  # fmt: skip
    for name, values in part.per_sample.items():
        np.testing.assert_array_equal(values, whole.per_sample[name][:, 2:], err_msg=name)
    for b, kinds in part.random.items():
        for kind, values in kinds.items():
            np.testing.assert_array_equal(values, whole.random[b][kind][2:], err_msg=kind)
    other = run(setup, seed=6, sanity_samples=0, batch_size=2)
    assert not np.array_equal(
        other.random["blurred"]["deletion_auc"], whole.random["blurred"]["deletion_auc"]
    )


def test_shards_merge_to_the_single_process_evaluation(setup) -> None:
    # two processes, played in turn: rank 1 hands its part over, rank 0 merges both parts
    single = run(setup, seed=2, batch_size=2, sanity_samples=2)
    handed: list[dict] = []
    assert run(setup, seed=2, batch_size=2, shard=(1, 2), exchange=handed.append) is None
    merged = run(
        setup, seed=2, batch_size=2, sanity_samples=2, shard=(0, 2),
        exchange=lambda part: [part, *handed],
    )  # fmt: skip
    assert set(merged.per_sample) == set(single.per_sample)
    for name, values in single.per_sample.items():
        np.testing.assert_array_equal(merged.per_sample[name], values, err_msg=name)
    for b in single.curves:
        for kind in ("deletion", "insertion"):
            np.testing.assert_array_equal(merged.curves[b][kind], single.curves[b][kind])
        for kind in ("deletion_auc", "insertion_auc"):
            np.testing.assert_array_equal(merged.random[b][kind], single.random[b][kind])
    np.testing.assert_equal(merged.table, single.table)  # NaN where undefined, in both
    with pytest.raises(InputError, match="not exactly once"):
        run(setup, batch_size=2, shard=(0, 2), exchange=lambda part: [part, part])


# -- exact values on a fixed-weight model -----------------------------------------------------

X2 = np.array([[[1.0, 2.0], [3.0, 4.0]]])  # one 2x2 design
W2 = torch.tensor([[2.0, -1.0], [0.5, 1.0]])  # f(x) = sum(w x): contributions [[2, -2], [1.5, 4]]


class WeightedSum(torch.nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(weight.clone())

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return (a[:, 0] * self.weight).sum(dim=(1, 2))


def linear_model() -> torch.nn.Module:
    """Identity 1x1 convolution (the explained layer "0") then ``sum(w x)``."""
    conv = torch.nn.Conv2d(1, 1, 1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    return torch.nn.Sequential(conv, WeightedSum(W2)).eval()


@pytest.fixture(scope="module")
def exact():
    truth = (W2.numpy() * X2).astype(np.float64)
    return evaluate(
        linear_model(), X2, ["hirescam"], truth=truth, peak_margin=np.ones(1), target_std=1.0,
        interpolation="none", steps=4, baselines=("smooth-wall",), random_permutations=5,
        road_percentages=(0.25,), sanity_samples=0, batch_size=1, progress=False,
    )  # fmt: skip


def test_exact_deletion_insertion_by_hand(exact) -> None:
    # HiResCAM at the identity layer is w x exactly; cells ranked 4, 2, 1.5, -2; f(x) = 5.5.
    # deletion outputs 5.5, 1.5, -0.5, -2, 0 and insertion 0, 4, 6, 7.5, 5.5, over f(x) - f(b)
    deletion = np.array([5.5, 1.5, -0.5, -2.0, 0.0]) / 5.5
    insertion = np.array([0.0, 4.0, 6.0, 7.5, 5.5]) / 5.5
    d_auc = np.trapezoid(deletion, dx=0.25)
    i_auc = np.trapezoid(insertion, dx=0.25)
    assert d_auc == pytest.approx(0.0795454545)  # 0.25 (0.5 + 0.2727 - 0.0909 - 0.3636)
    np.testing.assert_allclose(exact.per_sample["deletion_auc/smooth-wall"], [[d_auc]])
    np.testing.assert_allclose(exact.per_sample["insertion_auc/smooth-wall"], [[i_auc]])
    np.testing.assert_allclose(exact.curves["smooth-wall"]["deletion"], [deletion])
    row = exact.table["hirescam"]
    assert row["ins-del/smooth-wall"] == pytest.approx(i_auc - d_auc)
    assert row["flagged/smooth-wall"] == 0.0
    # a linear model: deletion and insertion of any order sum to f(x) + f(b) at every step
    rnd = exact.random["smooth-wall"]
    np.testing.assert_allclose(rnd["deletion_auc"] + rnd["insertion_auc"], [1.0])


def test_exact_road_by_hand(exact) -> None:
    # MoRF 25% removes the cell of contribution 4 (x = 4, w = 1); its 8-neighbour imputation is
    # (2/6 + 3/6 + 1/12) / (5/12) = 2.2, so f falls by 1.8. LeRF removes the cell of -2
    # (x = 2, w = -1), imputed as (1/6 + 4/6 + 3/12) / (5/12) = 2.6: f falls by 0.6.
    # Imputation noise is 1% of the field's std (0.011): well inside the tolerance.
    row = exact.table["hirescam"]
    assert row["road_morf"] == pytest.approx(-1.8, abs=0.05)
    assert row["road_lerf"] == pytest.approx(-0.6, abs=0.05)
    assert row["road_combined"] == pytest.approx(0.6, abs=0.05)


def test_exact_ground_truth_by_hand(exact) -> None:
    row = exact.table["hirescam"]
    assert row["gt_spearman_input"] == pytest.approx(1.0)
    assert row["gt_spearman_native"] == pytest.approx(1.0)
    # 10% of 4 cells rounds to one cell, the largest |truth| (4). A signed map localises by
    # its magnitude against |truth| masks: mass |2| + |-2| + |1.5| + |4| = 9.5
    assert row["gt_rma"] == pytest.approx(4 / 9.5)
    assert row["gt_rra"] == 1.0
    assert row["gt_pointing"] == 1.0
    assert row["gt_excluded"] == 0.0
    # error budget: the map is the model's own integrated gradient, which is the truth, on a
    # layer grid equal to the input grid
    assert row["eb_model_ig"] == pytest.approx(1.0)
    assert row["eb_ig_truth"] == pytest.approx(1.0)
    assert row["eb_grid_ceiling"] == 1.0


def test_grid_ceiling_of_a_coarse_layer(setup) -> None:
    ev = run(setup, sanity_samples=0)
    # hirescam lives on the 8x8 layer grid of a 16x16 design: its ceiling is below 1;
    # the input-grid methods' is 1
    assert 0 < ev.table["hirescam"]["eb_grid_ceiling"] < 1
    assert ev.table["gradient"]["eb_grid_ceiling"] == 1.0
    assert ev.table["gradient"]["eb_ig_truth"] == ev.table["hirescam"]["eb_ig_truth"]


def test_score_files_hold_the_evaluation(exact, tmp_path) -> None:
    import json

    import xarray as xr

    from explain.evaluation.recommend import recommend
    from explain.evaluation.report import write_results

    exact.settings.update(
        checkpoint="ckpt", checkpoint_sha256="0" * 64, campaign="c.nc", split="test",
        wall_seconds=1.0,
    )  # fmt: skip
    rec = recommend(exact.table, exact.settings)
    write_results(exact, rec, np.array([7]), tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["table"]["hirescam"]["gt_rma"] == pytest.approx(4 / 9.5)
    assert summary["recommendation"] == rec.method
    with xr.open_dataset(tmp_path / "scores.nc", engine="h5netcdf") as ds:
        assert list(ds["sample"].values) == [7]
        np.testing.assert_allclose(
            ds["deletion_auc_smooth-wall"].values,
            exact.per_sample["deletion_auc/smooth-wall"],
            rtol=1e-6,
        )
    lines = (tmp_path / "scores.csv").read_text().splitlines()
    header, values = lines[0].split(","), lines[1].split(",")
    assert values[0] == "hirescam"
    assert float(values[header.index("ins-del/smooth-wall")]) == pytest.approx(
        exact.table["hirescam"]["ins-del/smooth-wall"]
    )
    md = (tmp_path / "scores.md").read_text()
    assert f"| hirescam | {exact.table['hirescam']['insertion/smooth-wall']:.3f} |" in md


def test_sanity_checks_compare_the_model_dependent_factor(tiny_model) -> None:
    """Gradient x input is judged by its gradient: the input factor survives any re-draw."""
    from explain.evaluation.protocol import _maps_fn

    x = 0.05 * torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(6))
    methods = ["gradient", "gradient-x-input", "integrated-gradients"]
    maps = _maps_fn(methods, "network.features", (16, 16), "bilinear", chunk=64)(tiny_model, x)
    torch.testing.assert_close(maps["gradient-x-input"], maps["gradient"], rtol=1e-5, atol=1e-9)
    # integrated gradients / x is the path-averaged gradient: near the gradient for small x
    assert (
        torch.corrcoef(
            torch.stack([maps["integrated-gradients"].flatten(), maps["gradient"].flatten()])
        )[0, 1]
        > 0.99
    )


def hand_evaluation(samples: int, gap: float) -> Evaluation:
    """Two methods on ``samples`` designs; ``a`` beats ``b`` on insertion - deletion by ``gap``."""
    rng = np.random.default_rng(0)
    noise = rng.normal(0.0, 0.1, (2, samples))
    per_sample = {
        "deletion_auc/smooth-wall": np.full((2, samples), 0.2),
        "insertion_auc/smooth-wall": np.array([[0.6 + gap], [0.6]]) + noise,
        "small_change/smooth-wall": np.zeros((2, samples)),
        "road_morf": np.zeros((2, samples)),
        "road_lerf": np.zeros((2, samples)),
        "road_combined": np.array([[gap], [0.0]]) + noise,
    }
    random = {"smooth-wall": {"deletion_auc": np.full(samples, 0.4),
                              "insertion_auc": np.full(samples, 0.4)}}  # fmt: skip
    ev = Evaluation(["hirescam", "gradient"], samples, per_sample, {}, random)
    ev.settings = {"baselines": ["smooth-wall"], "ground_truth": False, "sanity_samples": 0,
                   "data_randomisation": False}  # fmt: skip
    ev.table = summarise(ev)
    return ev


def test_decide_says_how_sure_and_refuses_thin_evidence() -> None:
    from explain.evaluation.recommend import decide

    thin = decide(hand_evaluation(32, gap=0.2), rounds=50)
    assert thin.method is None  # 32 designs < MIN_DESIGNS
    assert thin.candidate == "hirescam"
    assert "not enough evidence" in thin.notes[0]
    firm = decide(hand_evaluation(400, gap=0.2), rounds=50)
    assert firm.method == "hirescam"
    assert firm.wins == {"hirescam": 1.0}  # a clear winner wins every resample
    close = decide(hand_evaluation(400, gap=0.0), rounds=50)
    assert sum(close.wins.values()) == pytest.approx(1.0)
    assert 0.0 < close.wins.get("hirescam", 0.0) < 1.0  # a close call is seen as one


def test_splits_and_layer_sweep_reach_the_files(setup, tmp_path) -> None:
    import json

    from explain.evaluation.recommend import recommend
    from explain.evaluation.report import write_results

    _, a = setup
    ratio = np.linspace(0.1, 1.6, len(a["peak_margin"]))
    ev = run(setup, sanity_samples=0, saturation=ratio, layer_sweep_methods=("hirescam",))
    assert set(ev.splits) == {"saturation", "peak_margin"}
    kept = int((a["peak_margin"] >= 0.05).sum())
    assert sum(ev.splits["peak_margin"].designs.values()) == kept
    assert ev.settings["layer_sweep"] == ["hirescam"]
    assert {r.method for r in ev.layers} == {"hirescam"}
    ev.settings.update(
        checkpoint="ckpt", checkpoint_sha256="0" * 64, campaign="c.nc", split="test",
        wall_seconds=1.0,
    )  # fmt: skip
    write_results(ev, recommend(ev.table, ev.settings), np.arange(6), tmp_path)
    lines = (tmp_path / "layers.csv").read_text().splitlines()
    assert lines[0].split(",") == list(keys.LAYER_COLUMNS)
    assert len(lines) == 1 + len(ev.layers)
    assert (tmp_path / "layers.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["layers"][-1]["layer"] == "network.features"
    assert summary["splits"]["saturation"]["designs"] == ev.splits["saturation"].designs
    md = (tmp_path / "scores.md").read_text()
    for title in ("by saturation regime", "by peak margin", "layer by layer"):
        assert f"## Agreement with the truth {title}" in md
    # without ratios the saturation split is skipped with a note, and no sweep, no layers.csv
    plain = run(setup, sanity_samples=0)
    assert set(plain.splits) == {"peak_margin"}
    assert plain.layers is None
