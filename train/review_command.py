"""``surrogate review``: a design review of one or more roughness designs, for a board to sign.

Reads the designs (a campaign file, or a ``.npy`` height map with ``--dx``), the trained
surrogate(s) and the campaign they were trained on; writes ``review.pdf``, ``review.md``,
``review.json``, ``regions.csv`` and ``review.nc`` into ``--out``, all moved in together at the
end (:func:`data.atomic.atomic_folder`). What is computed is in :mod:`train.review`.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data.atomic import atomic_folder, atomic_path, check_outputs
from data.errors import InputError
from train.inputs import OneLineParser, parse_samples, positive_int

OUTPUTS = ("review.pdf", "review.md", "review.json", "regions.csv", "review.nc")
CONTEXT_OF_USE = (
    "Context of use: screening a roughness design of a re-entry heat shield for the maximum "
    "cross-flow vorticity it seeds downstream, in units of U_e/delta, before a simulation is "
    "run. The surrogate answers within the conditions of its training campaign; outside them "
    "(see the domain check) its answer is not evidence."
)
CAVEAT = (
    "The training campaign and every re-simulated what-if come from a reduced-order model of "
    "the mechanism (linear transport of the roughness-slope source, saturated at the wake "
    "maximum), not from a DNS: agreement with it shows the surrogate learned that model, not "
    "that the model is the flow."
)
DEFAULT_METHOD = "integrated-gradients"


def review_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="surrogate review",
        description="A design review: prediction with an interval, error in its range, domain "
        "check, the regions that drive it, what-ifs (re-simulated on synthetic campaigns), and "
        "a report (PDF, Markdown, JSON, CSV, netCDF).",
    )
    parser.add_argument(
        "--checkpoint", type=Path, nargs="+", required=True, help="one or more (an ensemble)"
    )
    parser.add_argument(
        "--design", type=Path, required=True, help="a campaign file or a .npy height map (delta)"
    )
    parser.add_argument("--dx", type=float, help="cell spacing in delta of a .npy design")
    parser.add_argument(
        "--samples",
        default="0",
        help="designs of a campaign file: i,j,k, START:STOP or N "
        "(the first N; default 0: the first design)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--method", help=f"attribution method (default: the evaluation's "
                        f"recommendation, else {DEFAULT_METHOD})")  # fmt: skip
    parser.add_argument("--evaluation", type=Path, help="a 'surrogate evaluate' output folder")
    parser.add_argument(
        "--campaign", type=Path, help="the training campaign (default: the checkpoint's)"
    )
    parser.add_argument("--level", type=float, default=0.9, help="interval level (default 0.9)")
    parser.add_argument("--seed", type=positive_int, default=1, help="seed of random regions")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier review")
    return parser


def review_command(args: Sequence[str]) -> int:
    opts = review_parser().parse_args(args)
    review_designs(**vars(opts))
    return 0


def review_designs(
    checkpoint: Sequence[Path],
    design: Path,
    out: Path,
    *,
    dx: float | None = None,
    samples: str = "0",
    method: str | None = None,
    evaluation: Path | None = None,
    campaign: Path | None = None,
    level: float = 0.9,
    seed: int = 1,
    overwrite: bool = False,
) -> dict:
    """Review the designs of ``design`` and write the report to ``out``; returns review.json."""
    from data.campaign import check_split_campaign, open_campaign
    from train.explain_command import campaign_physics
    from train.inputs import load_checkpoint
    from train.review import Ensemble, Reviewer, calibrate, fit_domain

    checkpoints = [Path(c) for c in checkpoint]
    out, design = Path(out), Path(design)
    if not 0 < level < 1:
        raise InputError(f"--level {level}: expected a number between 0 and 1")
    loaded = [load_checkpoint(c) for c in checkpoints]
    grids = {tuple(m.grid_shape) for m, _, _ in loaded}
    if len(grids) != 1:
        raise InputError(f"--checkpoint: the checkpoints were trained on different grids {grids}")
    model, splits, fingerprint = loaded[0]
    campaign = Path(campaign) if campaign else _training_campaign(checkpoints[0])
    inputs = [*checkpoints, design, campaign, *([evaluation] if evaluation else [])]
    check_outputs([out / n for n in OUTPUTS], overwrite, new_folder=True, inputs=inputs)
    designs = read_designs(design, samples, dx, grid=next(iter(grids)))
    method, why, scores = choose_method(method, evaluation)
    check_split_campaign(fingerprint, campaign, f"checkpoint {checkpoints[0]}")
    ensemble = Ensemble([m for m, _, _ in loaded]).eval()
    with open_campaign(campaign, check_values=False) as training:
        print(f"calibrating on {campaign} (validation and test splits of the checkpoint)")
        calibration = calibrate(ensemble, training, splits, level)
        domain = fit_domain(model, training, splits, seed)
        physics = campaign_physics(training)
    reviewer = Reviewer(ensemble, calibration, domain, method, physics, seed)
    results = [reviewer.review(d) for d in tqdm(designs, desc="reviewing", unit="design")]
    review = {
        "title": f"Design review of {design.name}",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "context_of_use": CONTEXT_OF_USE,
        "caveat": CAVEAT + ("" if physics else " This campaign records no physics: the "
                            "what-ifs are predicted only."),
        "provenance": provenance(checkpoints, design, campaign, model),
        "model": calibration.as_dict(len(loaded)),
        "method": {"name": method, "why": why, "units": _units(method), "scores": scores,
                   "maps_from": str(checkpoints[0])},
        "designs": [r.entry for r in results],
    }  # fmt: skip
    write_review(review, designs, results, out)
    print(f"review of {len(designs)} design(s) -> {out}/ ({', '.join(OUTPUTS)})")
    return review


def _training_campaign(checkpoint: Path) -> Path:
    from surrogate.checkpoint import read_checkpoint

    recorded = read_checkpoint(checkpoint).get("datamodule_hyper_parameters", {}).get("path")
    if recorded:  # a relative path is relative to where fit ran: here, or above the run
        for base in (Path.cwd(), *list(Path(checkpoint).resolve().parents)[:5]):
            if (base / recorded).is_file():
                return base / recorded
    raise InputError(
        f"--campaign: checkpoint {checkpoint} records its training campaign as {recorded!r}, "
        "which is not here; give the training campaign with --campaign"
    )


def read_designs(path: Path, samples: str, dx: float | None, grid: tuple[int, int]) -> list:
    """The designs of a campaign file (``samples``) or of a ``.npy`` height map (``dx``)."""
    from data.campaign import check_samples, open_campaign, sample_ids
    from train.review import Design

    if path.suffix == ".npy":
        if dx is None or not dx > 0:
            raise InputError(f"{path}: a .npy design needs --dx, its cell spacing in delta (> 0)")
        try:
            heights = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: not a readable .npy array ({exc})") from None
        heights = heights[None] if heights.ndim == 2 else heights
        if heights.ndim != 3 or not np.issubdtype(heights.dtype, np.floating):
            raise InputError(f"{path}: expected float heights (y, x) or (n, y, x), got "
                             f"{heights.dtype} {heights.shape}")  # fmt: skip
        if not np.isfinite(heights).all():
            raise InputError(f"{path}: heights have NaN or Inf values; expected finite heights")
        _check_grid(path, heights.shape[1:], grid)
        ys, xs = ((np.arange(n) + 0.5) * dx for n in heights.shape[1:])
        return [Design(f"{path.stem}[{i}]", h, ys, xs) for i, h in enumerate(heights)]
    with open_campaign(path, check_values=False) as ds:
        _check_grid(path, (ds.sizes["y"], ds.sizes["x"]), grid)
        ids = parse_samples(samples, ds.sizes["sample"])
        check_samples(ds, ids, str(path))
        own = sample_ids(ds, ids)
        ys = ds["y"].values if "y" in ds.coords else np.arange(ds.sizes["y"]) + 0.5
        xs = ds["x"].values if "x" in ds.coords else np.arange(ds.sizes["x"]) + 0.5
        heights = ds["roughness"][ids].values
        simulated = ds["max_vorticity"][ids].values
    return [
        Design(f"design {int(j)}", heights[k], ys, xs, int(i), int(j), float(simulated[k]))
        for k, (i, j) in enumerate(zip(ids, own, strict=True))
    ]


def _check_grid(path: Path, shape: tuple[int, ...], grid: tuple[int, int]) -> None:
    if tuple(shape) != tuple(grid):
        raise InputError(
            f"{path}: design grid is {shape[0]}x{shape[1]} but the surrogate was trained on "
            f"{grid[0]}x{grid[1]}; it cannot review another grid (resample the design first)"
        )


def choose_method(method: str | None, evaluation: Path | None) -> tuple[str, str, dict]:
    """The attribution method, why it was chosen, and its evaluation scores where known."""
    from explain.catalogue import METHODS

    summary = {}
    if evaluation is not None:
        path = Path(evaluation) / "summary.json"
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError):
            raise InputError(f"{path}: not a 'surrogate evaluate' summary.json") from None
    if method is not None:
        why = "chosen with --method"
    elif summary.get("recommendation"):
        method = summary["recommendation"]
        why = f"recommended by the evaluation in {evaluation}"
    elif summary.get("candidate"):
        method = summary["candidate"]
        why = f"the leading candidate of the evaluation in {evaluation} (none recommended firmly)"
    else:
        method = DEFAULT_METHOD
        why = ("no evaluation given: integrated gradients, at input resolution and complete "
               "(its map adds up to f(x) - f(0))")  # fmt: skip
    if method not in METHODS:
        raise InputError(f"--method {method!r}: unknown; choose from {', '.join(METHODS)}")
    row = summary.get("table", {}).get(method, {})
    return method, why, _scores(row)


def _scores(row: dict) -> dict:
    """The evaluation's verdicts on the method, in the report's words (``None``: not run)."""
    from explain.evaluation import table as keys

    def number(key: str) -> float | None:
        value = row.get(key)
        return float(value) if isinstance(value, (int, float)) and np.isfinite(value) else None

    passed = number(keys.CASCADE_PASS)
    return {
        "sanity": None if passed is None else ("pass" if passed >= 1 else "fail"),
        "faithfulness": number(keys.ins_del("smooth-wall")),
        "ground_truth_spearman": number(keys.GT_SPEARMAN_INPUT),
    }


def _units(method: str) -> str:
    from explain.catalogue import METHODS

    return METHODS[method].units


def provenance(checkpoints: list[Path], design: Path, campaign: Path, model) -> dict:
    from data.campaign import software_version
    from data.provenance import sha256

    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
            timeout=10,
        ).stdout.strip() or None  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "checkpoints": [{"path": str(c), "sha256": sha256(c)} for c in checkpoints],
        "design_file": str(design), "design_sha256": sha256(design),
        "campaign": str(campaign), "campaign_sha256": sha256(campaign),
        "software_version": software_version(), "git_commit": commit,
        "grid": list(getattr(model, "grid_shape", ())),
        "config": _resolved_config(checkpoints[0]),
    }  # fmt: skip


def _resolved_config(checkpoint: Path) -> dict:
    """The model's and the data's settings the first checkpoint was trained with."""
    from surrogate.checkpoint import read_checkpoint

    ckpt = read_checkpoint(checkpoint)
    plain = (str, int, float, bool, type(None), list, tuple)
    return {
        part: {k: list(v) if isinstance(v, tuple) else v for k, v in ckpt.get(key, {}).items()
               if isinstance(v, plain) and not k.startswith("_")}
        for part, key in (("model", "hyper_parameters"), ("data", "datamodule_hyper_parameters"))
    }  # fmt: skip


def write_review(review: dict, designs: list, results: list, out: Path) -> None:
    """Every output, written aside and moved into ``out`` together."""
    from train.review_report import DesignFigure, write_markdown, write_pdf

    figures = [
        DesignFigure(d.heights, d.ys, d.xs, r.map, review["method"]["units"], r.masks,
                     r.cam_pairs)
        for d, r in zip(designs, results, strict=True)
    ]  # fmt: skip
    with atomic_folder(out) as staging:
        with atomic_path(staging / "review.json") as tmp:
            tmp.write_text(json.dumps(review, indent=2, default=_plain) + "\n")
        write_markdown(review, staging / "review.md")
        write_pdf(review, figures, staging / "review.pdf")
        _regions_csv(review, staging / "regions.csv")
        _review_nc(review, designs, results, staging / "review.nc")


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def _regions_csv(review: dict, path: Path) -> None:
    rows = [{"design": d["label"], **r} for d in review["designs"] for r in d["regions"]]
    header = ["design", *(rows[0].keys() - {"design"} if rows else [])]
    header = ["design", *sorted(set(header) - {"design"})]
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)


def _review_nc(review: dict, designs: list, results: list, path: Path) -> None:
    """Heights, the chosen map and the region labels (0: none, k: region k) per design."""
    import xarray as xr

    from data.atomic import write_netcdf
    from data.provenance import cf_attrs

    first = designs[0]
    labels = np.zeros((len(designs), *first.heights.shape), dtype=np.int16)
    for i, r in enumerate(results):
        for k, mask in enumerate(r.masks, start=1):
            labels[i][mask] = k
    units = review["method"]["units"]
    ds = xr.Dataset(
        {
            "roughness": (("design", "y", "x"), np.stack([d.heights for d in designs]),
                          {"units": "delta", "long_name": "roughness height"}),
            "attribution": (("design", "y", "x"), np.stack([r.map for r in results]),
                            {"units": units, "long_name": f"{review['method']['name']} map"}),
            "region": (("design", "y", "x"), labels,
                       {"units": "1", "long_name": "region rank of each cell (0: no region)"}),
            "prediction": ("design", [d["prediction"] for d in review["designs"]],
                           {"units": "U_e/delta", "long_name": "surrogate max vorticity"}),
        },
        coords={
            "design": ("design", np.arange(len(designs)), {"units": "1", "long_name": "design"}),
            "label": ("design", [d.label for d in designs], {"units": "1", "long_name": "label"}),
            "y": ("y", first.ys, {"units": "delta", "long_name": "spanwise cell centre"}),
            "x": ("x", first.xs, {"units": "delta", "long_name": "streamwise cell centre"}),
        },
        attrs={
            **cf_attrs("design review maps and regions", "review", "surrogate review"),
            "method": review["method"]["name"],
            "checkpoint_sha256": review["provenance"]["checkpoints"][0]["sha256"],
            "design_sha256": review["provenance"]["design_sha256"],
            "campaign_sha256": review["provenance"]["campaign_sha256"],
            "software_version": review["provenance"]["software_version"],
        },
    )  # fmt: skip
    write_netcdf(ds, path)
