"""The recommendation rule on hand-made tables: sanity first, then chance, then mean rank."""

from __future__ import annotations

from explain.evaluation.recommend import criteria, recommend

SETTINGS = {"baselines": ["smooth-wall", "blurred"], "ground_truth": True}


def row(ins_del: tuple[float, float], road: float, rho: float, rma: float, **extra) -> dict:
    out = {
        "ins-del/smooth-wall": ins_del[0],
        "ins-del/blurred": ins_del[1],
        "ins-del_sem/smooth-wall": 0.01,
        "ins-del_sem/blurred": 0.01,
        "random_ins-del/smooth-wall": 0.0,
        "random_ins-del/blurred": 0.0,
        "road_combined": road,
        "gt_spearman_input": rho,
        "gt_rma": rma,
        "cascade_pass": 1.0,
        "cascade_spearman_abs": 0.1,
        "cascade_ssim": 0.2,
    }
    out.update(extra)
    return out


def test_criteria_follow_the_settings() -> None:
    assert criteria(SETTINGS)[-2:] == ["gt_spearman_input", "gt_rma"]
    assert "gt_rma" not in criteria({"baselines": ["blurred"], "ground_truth": False})


def test_sanity_failures_are_never_recommended_however_faithful() -> None:
    table = {
        "guided-backprop": row((0.9, 0.9), 0.9, 0.9, 0.9, cascade_pass=0.0),
        "hirescam": row((0.3, 0.4), 0.4, 0.3, 0.2),
        "gradient": row((0.2, 0.1), 0.1, 0.1, 0.3),
    }
    rec = recommend(table, SETTINGS)
    assert rec.method == "hirescam"
    assert "model randomisation" in rec.rejected["guided-backprop"]
    # hirescam ranks 1,1,1,1,2 -> 1.2; gradient 2,2,2,2,1 -> 1.8
    assert rec.ranking == [("hirescam", 1.2), ("gradient", 1.8)]


def test_data_randomisation_and_chance_level_reject() -> None:
    table = {
        "cam": row((0.3, 0.3), 0.2, 0.2, 0.2, data_pass=0.0, data_spearman_abs=0.8, data_ssim=0.9),
        "gradcam++": row((0.3, -0.01), 0.2, 0.2, 0.2),
        "gradient": row((0.1, 0.1), 0.1, 0.1, 0.1),
    }
    rec = recommend(table, SETTINGS)
    assert "data randomisation" in rec.rejected["cam"]
    assert "random order" in rec.rejected["gradcam++"]
    assert rec.method == "gradient"


def test_ties_go_to_the_cheaper_method_and_close_calls_are_named() -> None:
    table = {"scorecam": row((0.3, 0.3), 0.3, 0.3, 0.3), "hirescam": row((0.3, 0.3), 0.3, 0.3, 0.3)}
    rec = recommend(table, SETTINGS)
    assert rec.method == "hirescam"
    assert any("scorecam" in note for note in rec.notes)


def test_between_equivalents_the_map_that_adds_up_is_recommended() -> None:
    """Gradient x input wins by a hair; integrated gradients, equivalent and complete, replaces
    it. A complete method that is not equivalent does not."""
    table = {
        "gradient-x-input": row((0.631, 1.375), 0.738, 0.93, 0.55),
        "integrated-gradients": row((0.630, 1.374), 0.737, 0.93, 0.55),
        "hirescam": row((0.5, 1.0), 0.7, 0.9, 0.5),
    }
    rec = recommend(table, SETTINGS)
    assert rec.ranking[0][0] == "gradient-x-input"
    assert rec.method == "integrated-gradients"
    assert any("adds up" in note for note in rec.notes)
    table["integrated-gradients"] = row((0.3, 0.9), 0.737, 0.93, 0.55)  # no longer equivalent
    assert recommend(table, SETTINGS).method == "gradient-x-input"


def test_a_baseline_flip_is_reported() -> None:
    table = {"cam": row((0.5, 0.2), 0.3, 0.3, 0.3), "gradient": row((0.2, 0.5), 0.3, 0.3, 0.3)}
    rec = recommend(table, SETTINGS)
    assert any("changes with the baseline" in note for note in rec.notes)


def test_nothing_eligible() -> None:
    table = {"guided-backprop": row((0.9, 0.9), 0.9, 0.9, 0.9, cascade_pass=0.0)}
    assert recommend(table, SETTINGS).method is None


def test_with_ground_truth_a_method_must_beat_the_null_references() -> None:
    table = {
        # most faithful, but agrees with the truth no better than |h| does
        "layercam": row((0.8, 0.8), 0.8, 0.20, 0.5),
        "integrated-gradients": row((0.5, 0.5), 0.5, 0.60, 0.4),
        "abs-height": row((0.9, 0.9), 0.9, 0.25, 0.6),
        "random-map": row((0.1, 0.1), 0.0, 0.0, 0.1),
    }
    rec = recommend(table, SETTINGS)
    assert rec.method == "integrated-gradients"
    assert "null reference abs-height" in rec.rejected["layercam"]
    assert "null reference" in rec.rejected["abs-height"]
    # without ground truth the rule cannot apply: faithfulness decides
    no_truth = {**SETTINGS, "ground_truth": False}
    assert recommend(table, no_truth).method == "layercam"
