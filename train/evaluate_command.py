"""``surrogate evaluate``: which attribution method to trust for this surrogate, by the numbers."""

from __future__ import annotations

import argparse
import csv
import io
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from data.atomic import atomic_path
from data.errors import InputError
from explain.catalogue import METHODS
from train.explain_command import resolve_device, sha256, split_names

OUTPUTS = ("scores.md", "scores.csv", "scores.nc", "summary.json")


def evaluate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="surrogate evaluate",
        description="Score attribution methods on held-out designs (deletion/insertion, ROAD, "
        "ground truth, sanity checks) and recommend one by the rule in docs/evaluation.md.",
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="a 'surrogate fit' .ckpt")
    parser.add_argument("--data", type=Path, required=True, help="campaign file")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--methods", nargs="+", default=list(METHODS), help="methods to score (default: all)"
    )
    parser.add_argument(
        "--samples", type=int, default=None, help="score the first N held-out designs (default all)"
    )
    parser.add_argument(
        "--split",
        default="test",
        choices=("test", "val", "train", "all"),
        help="designs to score: the checkpoint's split (default test) or the whole campaign",
    )
    parser.add_argument("--layer", help="layer of the layer methods (default: last spatial)")
    parser.add_argument("--steps", type=int, default=100, help="deletion/insertion steps")
    parser.add_argument("--random-permutations", type=int, default=10)
    parser.add_argument(
        "--random-samples", type=int, default=None, help="designs for the random reference"
    )
    parser.add_argument(
        "--sanity-samples", type=int, default=16, help="designs for the randomisation checks"
    )
    parser.add_argument(
        "--road-percentages",
        default="10,20,30,40,50,60,70,80,90",
        help="cells ROAD removes, in %% (comma-separated; default 10,...,90)",
    )
    parser.add_argument(
        "--randomised-checkpoint",
        type=Path,
        help="a model trained on permuted targets (configs/randomised-targets.yaml), for the "
        "data-randomisation check",
    )
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--chunk", type=int, default=1024, help="perturbed inputs per pass")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--overwrite", action="store_true", help="replace earlier results")
    return parser


def _select(ckpt: dict, split: str, total: int, limit: int | None, path: Path) -> np.ndarray:
    if split == "all":
        ids = np.arange(total)
    else:
        stored = ckpt.get("CampaignDataModule", {}).get(f"split_{split}")
        if stored is None:
            raise InputError(f"{path}: checkpoint records no {split} split; use --split all")
        ids = np.asarray(sorted(stored), dtype=np.int64)
        if ids.size and ids.max() >= total:
            raise InputError(f"{path}: its {split} split indexes beyond the campaign's {total}")
    if limit is not None:
        if limit < 1:
            raise InputError(f"--samples must be >= 1, got {limit}")
        ids = ids[:limit]
    return ids


def _percentages(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) / 100 for v in text.split(",") if v)
    except ValueError:
        raise InputError(f"--road-percentages {text!r}: expected numbers like 10,50,90") from None
    if not values or not all(0 < v < 1 for v in values):
        raise InputError(f"--road-percentages {text!r}: each must lie between 0 and 100")
    return values


def evaluate_command(args: Sequence[str]) -> int:
    """Run ``surrogate evaluate``; returns the exit status."""
    opts = evaluate_parser().parse_args(args)
    from data.campaign import open_campaign
    from surrogate.checkpoint import model_from_checkpoint, read_checkpoint

    existing = [name for name in OUTPUTS if (opts.out / name).exists()]
    if existing and not opts.overwrite:
        raise InputError(f"{opts.out}: already holds {existing[0]}; pass --overwrite to replace")
    for name in ("steps", "random_permutations", "batch_size", "chunk"):
        if getattr(opts, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be >= 1")
    ckpt = read_checkpoint(opts.checkpoint)
    model = model_from_checkpoint(ckpt, opts.checkpoint)
    randomised = None
    if opts.randomised_checkpoint is not None:
        from surrogate.checkpoint import load_model

        randomised = load_model(opts.randomised_checkpoint)
    campaign = open_campaign(opts.data)
    try:
        shape = (campaign.sizes["y"], campaign.sizes["x"])
        grid = tuple(int(n) for n in getattr(model, "grid_shape", (0, 0)))
        if grid != (0, 0) and shape != grid:
            raise InputError(
                f"{opts.data}: roughness grid is {shape[0]}x{shape[1]} but checkpoint "
                f"{opts.checkpoint} was trained on {grid[0]}x{grid[1]}"
            )
        ids = _select(ckpt, opts.split, campaign.sizes["sample"], opts.samples, opts.checkpoint)
        roughness = campaign["roughness"].values[ids]
        has_truth = "contribution" in campaign and "peak_margin" in campaign
        truth = campaign["contribution"].values[ids] if has_truth else None
        margin = campaign["peak_margin"].values[ids] if has_truth else None
        target_std = float(np.std(campaign["max_vorticity"].values))
    finally:
        campaign.close()
    return _run(opts, model, randomised, ids, roughness, truth, margin, target_std)


def _run(opts, model, randomised, ids, roughness, truth, margin, target_std) -> int:
    from explain.evaluation.protocol import evaluate
    from explain.evaluation.recommend import recommend

    device = resolve_device(opts.device)
    model.to(device)
    start = time.perf_counter()
    ev = evaluate(
        model,
        roughness,
        split_names(opts.methods),
        truth=truth,
        peak_margin=margin,
        target_std=target_std,
        layer=opts.layer,
        steps=opts.steps,
        random_permutations=opts.random_permutations,
        random_samples=opts.random_samples,
        sanity_samples=opts.sanity_samples,
        road_percentages=_percentages(opts.road_percentages),
        randomised_model=randomised,
        batch_size=opts.batch_size,
        chunk=opts.chunk,
        seed=opts.seed,
    )
    seconds = time.perf_counter() - start
    rec = recommend(ev.table, ev.settings)
    ev.settings.update(
        checkpoint=str(opts.checkpoint),
        checkpoint_sha256=sha256(opts.checkpoint),
        campaign=str(opts.data),
        split=opts.split,
        randomised_checkpoint=str(opts.randomised_checkpoint or ""),
        wall_seconds=round(seconds, 1),
    )
    opts.out.mkdir(parents=True, exist_ok=True)
    write_results(ev, rec, ids, opts.out)
    print(markdown_table(ev, rec))
    print(f"\nresults in {opts.out}/ ({seconds:.0f} s)")
    return 0


# --- output --------------------------------------------------------------------------------

COLUMNS = {  # column: (header, format)
    "insertion/smooth-wall": ("ins (wall)", "{:.3f}"),
    "deletion/smooth-wall": ("del (wall)", "{:.3f}"),
    "ins-del/smooth-wall": ("ins−del (wall)", "{:.3f}"),
    "insertion/blurred": ("ins (blur)", "{:.3f}"),
    "deletion/blurred": ("del (blur)", "{:.3f}"),
    "ins-del/blurred": ("ins−del (blur)", "{:.3f}"),
    "road_combined": ("ROAD comb.", "{:.3f}"),
    "gt_spearman_input": ("ρ truth", "{:.3f}"),
    "gt_spearman_native": ("ρ truth (layer)", "{:.3f}"),
    "gt_rma": ("RMA@10%", "{:.3f}"),
    "gt_rra": ("RRA@10%", "{:.3f}"),
    "gt_pointing": ("pointing", "{:.2f}"),
    "gt_iou": ("IoU", "{:.3f}"),
    "cascade_spearman_abs": ("cascade ρ|m|", "{:.2f}"),
    "cascade_ssim": ("cascade SSIM", "{:.2f}"),
    "cascade_pass": ("model rand.", None),
    "data_spearman_abs": ("data ρ|m|", "{:.2f}"),
    "data_pass": ("data rand.", None),
}


def _cell(value: float | None, fmt: str | None) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if fmt is None:
        return "pass" if value >= 1 else "**fail**"
    return fmt.format(value)


def markdown_table(ev, rec) -> str:
    cols = [c for c in COLUMNS if any(c in row for row in ev.table.values())]
    lines = [
        "| method | " + " | ".join(COLUMNS[c][0] for c in cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for method, row in ev.table.items():
        name = method if METHODS[method].recommended else f"{method} (nr)"
        cells = [_cell(row.get(c), COLUMNS[c][1]) for c in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    s = ev.settings
    rnd = " · ".join(
        f"random-order ins−del ({b}): {next(iter(ev.table.values()))[f'random_ins-del/{b}']:.3f}"
        for b in s["baselines"]
    )
    lines += ["", rnd, "", recommendation_text(rec)]
    return "\n".join(lines)


def recommendation_text(rec) -> str:
    if rec.method is None:
        return (
            "**Recommendation:** none — no method passes the sanity checks and beats random order."
        )
    ranking = ", ".join(f"{m} ({r:.1f})" for m, r in rec.ranking)
    out = [f"**Recommendation: `{rec.method}`** (mean rank over the criteria; ranking: {ranking})."]
    out += [f"- {note}" for note in rec.notes]
    out += [f"- not eligible: `{m}` — {why}" for m, why in rec.rejected.items()]
    return "\n".join(out)


def write_results(ev, rec, ids: np.ndarray, folder: Path) -> None:
    """scores.md/.csv/.nc, summary.json and the curve and cascade plots, each written atomically."""
    import xarray as xr

    from explain.evaluation.plots import cascade_plot, curves_plot

    s = ev.settings
    header = [
        "# Attribution methods scored",
        "",
        f"Checkpoint `{s['checkpoint']}` (sha256 {s['checkpoint_sha256'][:12]}…), campaign "
        f"`{s['campaign']}`, {s['samples']} designs of the {s['split']} split; layer "
        f"`{s['layer']}`, maps {s['interpolation']} on the input grid; {s['steps']} deletion/"
        f"insertion steps; random reference {s['random_permutations']} orders × "
        f"{s['random_samples']} designs; sanity checks on {s['sanity_samples']} designs; "
        f"seed {s['seed']}; {s['wall_seconds']} s. (nr) = not recommended by design.",
        "",
    ]
    with atomic_path(folder / "scores.md") as tmp:
        tmp.write_text("\n".join(header) + markdown_table(ev, rec) + "\n")
    buffer = io.StringIO()
    keys = sorted({k for row in ev.table.values() for k in row})
    writer = csv.writer(buffer)
    writer.writerow(["method", *keys])
    for method, row in ev.table.items():
        writer.writerow([method, *[row.get(k, "") for k in keys]])
    with atomic_path(folder / "scores.csv") as tmp:
        tmp.write_text(buffer.getvalue())
    data = {
        name.replace("/", "_"): (("method", "sample"), values.astype(np.float32))
        for name, values in ev.per_sample.items()
    }
    for b, curves in ev.curves.items():
        for kind, values in curves.items():
            data[f"{kind}_curve_{b}"] = (("method", "step"), np.asarray(values, dtype=np.float32))
    if ev.cascade is not None:
        for mode, result in (("cascade", ev.cascade), ("independent", ev.independent)):
            stack = np.stack(
                [
                    np.stack([result.values[m][k] for k in ("spearman_abs", "spearman", "ssim")])
                    for m in ev.methods
                ]
            )  # (method, measure, step, sanity_sample)
            data[f"{mode}_similarity"] = (
                ("method", "measure", f"{mode}_step", "sanity_sample"),
                stack.astype(np.float32),
            )
    ds = xr.Dataset(
        data,
        coords={
            "method": ev.methods,
            "sample": ids,
            "step": np.linspace(0, 1, s["steps"] + 1),
            "measure": ["spearman_abs", "spearman", "ssim"],
        },
        attrs={k: json.dumps(v) if not isinstance(v, str) else v for k, v in s.items()},
    )
    if ev.cascade is not None:
        ds = ds.assign_coords(
            cascade_step=list(ev.cascade.steps), independent_step=list(ev.independent.steps)
        )
    with atomic_path(folder / "scores.nc") as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf")
    summary = {
        "settings": s,
        "table": ev.table,
        "recommendation": rec.method,
        "ranking": rec.ranking,
        "rejected": rec.rejected,
        "notes": rec.notes,
    }
    with atomic_path(folder / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2, default=float) + "\n")
    curves_plot(ev, folder / "curves")
    if ev.cascade is not None:
        cascade_plot(ev, folder / "cascade")
