"""Every score key is declared in table.py and produced by the protocol, and nothing else is."""

from __future__ import annotations

import pytest
import torch

from explain.evaluation import table as keys
from explain.evaluation.protocol import evaluate

# a layer map, a rectified layer map, an input map, a pyramid map
METHODS = ["hirescam", "layercam", "gradient", "polycam+"]


@pytest.fixture(scope="module")
def setup(tiny_campaign) -> tuple[torch.nn.Module, dict]:
    return tiny_campaign


@pytest.mark.parametrize(
    "options",
    [
        {"truth": True, "sanity_samples": 2, "randomised": True},
        {"truth": False, "sanity_samples": 0, "randomised": False, "baselines": ("blurred",)},
    ],
    ids=["everything", "no-truth-no-sanity"],
)
def test_declared_keys_are_exactly_the_produced_ones(setup, options: dict) -> None:
    net, a = setup
    truth = options.pop("truth")
    randomised = options.pop("randomised")
    ev = evaluate(
        net, a["roughness"], METHODS, truth=a["contribution"] if truth else None,
        peak_margin=a["peak_margin"] if truth else None, target_std=0.01, steps=4,
        random_permutations=2, road_percentages=(0.5,), batch_size=4, chunk=64,
        randomised_model=net if randomised else None, progress=False, **options,
    )  # fmt: skip
    assert set(ev.per_sample) == set(keys.per_sample_keys(ev.settings))
    for method, row in ev.table.items():
        assert set(row) == set(keys.table_keys(ev.settings)), method
    shown = {key for key, _, _ in keys.display_columns(ev.settings["baselines"])}
    assert set(keys.criteria(ev.settings)) <= set(keys.table_keys(ev.settings))
    if truth and randomised:
        assert shown <= set(keys.table_keys(ev.settings))


def test_keys_are_spelled_as_the_files_name_them() -> None:
    assert keys.ins_del("blurred") == "ins-del/blurred"
    assert keys.deletion_auc("smooth-wall") == "deletion_auc/smooth-wall"
    assert keys.cascade("ssim") == "cascade_ssim"
    assert keys.criteria({"baselines": ["smooth-wall"], "ground_truth": True}) == [
        "ins-del/smooth-wall",
        "road_combined",
        "gt_spearman_input",
        "gt_rma",
    ]
