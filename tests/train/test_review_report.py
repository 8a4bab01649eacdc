"""The review report: Markdown and PDF show the numbers of review.json, formatted one way."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pytest

from data.errors import InputError
from train.review_report import (
    DesignFigure,
    design_lines,
    fmt,
    summary_lines,
    write_markdown,
    write_pdf,
)

N = 16
FAILED = "mean height 0.412 delta above the training range [0.05, 0.3] delta"


BOXES = [(2, 8, 4, 10), (10, 14, 12, 15)]  # rows and columns (stop excluded) of the regions
CELL = 0.125  # delta


def _region(rank: int, sign: int, share: float) -> dict:
    y0, y1, x0, x1 = (CELL * c for c in BOXES[rank - 1])
    return {"rank": rank, "sign": sign, "attribution": sign * share * 0.2, "share": share,
            "cells": 9, "area": (y1 - y0) * (x1 - x0), "centroid_y": (y0 + y1) / 2,
            "centroid_x": (x0 + x1) / 2, "box_y0": y0, "box_y1": y1, "box_x0": x0, "box_x1": x1,
            "peak_height": 0.2311, "mean_height": 0.1207}  # fmt: skip


def _what_ifs(true: bool) -> list[dict]:
    rows = []
    for rank, change in ((1, -0.01234), (2, 0.00456)):
        for edit, to, scale in (("region", "wall", 1.0), ("region", "blurred", 0.6),
                                ("random", "wall", 0.1)):  # fmt: skip
            c = change * scale
            rows.append({"rank": rank, "edit": edit, "to": to, "before": 0.12, "after": 0.12 + c,
                         "change": c, "true_change": c * 0.97 if true else None})  # fmt: skip
    return rows


def _design(k: int, out_of_domain: bool, simulated: bool) -> dict:
    p = 0.1234 + 0.01 * k
    findings = [{"check": "grid y", "value": 16.0, "low": 16.0, "high": 16.0, "passed": True,
                 "message": "grid y 16 cells, as trained"}]  # fmt: skip
    if out_of_domain:
        findings.append({"check": "mean height", "value": 0.412, "low": 0.05, "high": 0.3,
                         "passed": False, "message": FAILED})  # fmt: skip
    return {
        "label": f"design {k}", "sample": k, "prediction": p, "interval": [p - 0.0134, p + 0.0136],
        "spread": 0.0021 if simulated else None, "members": [p - 0.002, p, p + 0.002],
        "simulated": p + 0.0011 if simulated else None,
        "error_near": {"lo": 0.1, "hi": 0.15, "n": 200, "bias": -0.0021, "rmse": 0.003,
                       "abs_q90": 0.0052, "extrapolated": out_of_domain},
        "domain": {"in_domain": not out_of_domain, "findings": findings},
        "regions": [_region(1, 1, 0.4213), _region(2, -1, 0.1187)],
        "what_ifs": _what_ifs(simulated),
        "fd_check": {"finite_difference": 0.0311, "first_order": 0.0302, "ratio": 0.9711,
                     "relative_error": 0.0289} if simulated else None,
        "trust": {"deletion_auc_map": 0.2113, "deletion_auc_random": 0.4987,
                  "faster_than_random": True},
    }  # fmt: skip


@pytest.fixture
def review() -> dict:
    """Two designs: one out of domain with a failed finding, one re-simulated."""
    return {
        "title": "Design review: two test patches", "created": "2026-12-02T21:30:00+00:00",
        "context_of_use": "Ranking candidate roughness patches before simulation. " * 4,
        "caveat": "A reduced-order model, not a DNS; values are indicative. " * 3,
        "provenance": {
            "checkpoints": [{"path": "runs/a/best.ckpt", "sha256": "ab" * 32},
                            {"path": "runs/b/best.ckpt", "sha256": "cd" * 32}],
            "design_file": "designs.nc", "design_sha256": "ef" * 32, "campaign": "campaign.nc",
            "campaign_sha256": "01" * 32, "software_version": "0.1.0", "git_commit": "1234abcd",
        },
        "model": {"level": 0.9, "halfwidth": 0.0135, "calibration_samples": 500, "members": 3,
                  "binned_errors": [{"lo": 0.05 * b, "hi": 0.05 * (b + 1), "n": 100 + b,
                                     "bias": 0.001 * (b - 2), "rmse": 0.003 + 0.001 * b,
                                     "abs_q90": 0.005 + 0.001 * b} for b in range(5)]},
        "method": {"name": "integrated-gradients", "why": "recommended by the evaluation in eval/",
                   "units": "U_e/delta per cell",
                   "scores": {"sanity": "pass", "faithfulness": 0.7312,
                              "ground_truth_spearman": 0.8123}},
        "designs": [_design(1, True, False), _design(2, False, True)],
    }  # fmt: skip


def _figure(seed: int, cams: bool = True) -> DesignFigure:
    rng = np.random.default_rng(seed)
    cells = (np.arange(N) + 0.5) * CELL
    masks = [np.zeros((N, N), bool) for _ in BOXES]
    for mask, (y0, y1, x0, x1) in zip(masks, BOXES, strict=True):
        mask[y0:y1, x0:x1] = True
    pairs = {"hirescam": {"none": rng.normal(size=(4, 4)), "bilinear": rng.normal(size=(N, N))},
             "layercam": {"none": rng.random((4, 4)), "bilinear": rng.random((N, N))}}  # fmt: skip
    return DesignFigure(
        heights=0.1 * rng.normal(size=(N, N)), ys=cells, xs=cells,
        map=rng.normal(size=(N, N)) * 1e-3, map_units="U_e/delta per cell", masks=masks,
        cam_pairs=pairs if cams else {},
    )  # fmt: skip


def _pdf_pages(path: Path) -> int:
    return len(re.findall(rb"/Type\s*/Page[^s]", path.read_bytes()))


def _flat(texts: list[str]) -> str:
    """A page's strings with line wrapping undone."""
    return " ".join(" ".join(texts).split())


def _numbers(design: dict) -> list[str]:
    """What review.json says of a design, as the report must print it."""
    values = [design["prediction"], *design["interval"]]
    values += [100 * r["share"] for r in design["regions"]]
    values += [w["change"] for w in design["what_ifs"]]
    values += [w["true_change"] for w in design["what_ifs"] if w["true_change"] is not None]
    return [fmt(v) for v in values]


def test_fmt_is_four_decimals_and_never_hides_a_value() -> None:
    assert fmt(0.12344) == "0.1234"
    assert fmt(-0.0021) == "-0.0021"
    assert fmt(0.0) == "0.0000"
    assert fmt(3e-6) == "3.000e-06"
    assert fmt(None) == fmt(float("nan")) == "n/a"


def test_pdf_pages_show_the_numbers_of_their_design(review: dict, tmp_path: Path) -> None:
    pdf = tmp_path / "review.pdf"
    pages = write_pdf(review, [_figure(0), _figure(1)], pdf)
    assert pdf.read_bytes().startswith(b"%PDF")
    assert _pdf_pages(pdf) == len(pages) == 3
    assert not list(tmp_path.glob(".*"))  # no temporary left beside the output
    summary = _flat(pages[0])
    assert all(line in summary for line in summary_lines(review))
    for i, design in enumerate(review["designs"]):
        assert fmt(design["prediction"]) in summary
        text, other = _flat(pages[1 + i]), _flat(pages[2 - i])
        for number in _numbers(design):
            assert number in text, number
        assert all(line in text for line in design_lines(review, i))
        assert fmt(design["prediction"]) not in other  # each number on its own design's page
    assert FAILED in _flat(pages[1])
    assert "OUTSIDE the training domain" in _flat(pages[1])
    assert FAILED not in _flat(pages[2])


def test_design_lines_say_what_each_number_is(review: dict) -> None:
    first, second = design_lines(review, 0), design_lines(review, 1)
    assert first[0] == "prediction 0.1334 U_e/delta, 90% interval [0.1200, 0.1470]"
    assert "simulated: not known for this design" in first
    assert f"failed: {FAILED}" in first
    assert any(line.startswith("test error near this value: bias -0.0021, RMSE 0.0030 U_e/delta "
                               "(n = 200") for line in first)  # fmt: skip
    assert (
        "smooth region 1 to the wall: predicted change -0.0123, re-simulated -0.0120 U_e/delta"
        in second
    )
    assert any(
        line.startswith("reference: smooth a random region like region 1") for line in second
    )
    assert any(line.startswith("region 2 lowers the prediction: share 11.8700%") for line in second)
    assert any(line.startswith("finite-difference check") for line in second)


def test_markdown_holds_the_same_lines(review: dict, tmp_path: Path) -> None:
    md = tmp_path / "review.md"
    write_markdown(review, md)
    text = md.read_text(encoding="utf-8")
    assert text.startswith(f"# {review['title']}")
    for line in summary_lines(review):
        assert f"- {line}" in text
    for i, design in enumerate(review["designs"]):
        for line in design_lines(review, i):
            assert f"- {line}" in text
        for number in _numbers(design):
            assert number in text
    assert review["provenance"]["checkpoints"][1]["sha256"] in text
    assert review["caveat"] in text


def test_review_without_simulations_or_cam_pairs_renders(review: dict, tmp_path: Path) -> None:
    bare = copy.deepcopy(review)
    bare["provenance"].update(campaign=None, campaign_sha256=None, git_commit=None)
    bare["method"]["scores"] = {"sanity": None, "faithfulness": None,
                                "ground_truth_spearman": None}  # fmt: skip
    for d in bare["designs"]:
        d.update(simulated=None, spread=None, fd_check=None, trust=None)
        for w in d["what_ifs"]:
            w["true_change"] = None
    bare["designs"][1]["regions"], bare["designs"][1]["what_ifs"] = [], []
    pdf, md = tmp_path / "bare.pdf", tmp_path / "bare.md"
    figures = [_figure(0, cams=False), _figure(1, cams=False)]
    figures[1] = DesignFigure(**{**figures[1].__dict__, "masks": []})
    pages = write_pdf(bare, figures, pdf)
    write_markdown(bare, md)
    assert _pdf_pages(pdf) == 3
    assert "regions: none above the threshold" in "\n".join(pages[2])
    assert "re-simulated" not in "\n".join(pages[1] + pages[2])
    assert "simulated: not known for this design" in md.read_text(encoding="utf-8")


def test_mismatched_figures_are_refused_before_writing(review: dict, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="one per design"):
        write_pdf(review, [_figure(0)], tmp_path / "r.pdf")
    bad = DesignFigure(**{**_figure(1).__dict__, "map": np.zeros((N, N - 1))})
    with pytest.raises(InputError, match=r"figures\[1\]\.map has shape"):
        write_pdf(review, [_figure(0), bad], tmp_path / "r.pdf")
    assert not list(tmp_path.iterdir())
