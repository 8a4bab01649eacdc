"""Writing an evaluation: ``scores.md``, ``scores.csv``, ``scores.nc``, ``summary.json`` and plots.

Each file is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import xarray as xr

from data.atomic import atomic_path, write_netcdf
from data.campaign import software_version
from data.provenance import cf_attrs
from explain.catalogue import METHOD_DIM, METHODS
from explain.evaluation import table as keys
from explain.evaluation.layer_plot import layers_plot
from explain.evaluation.layers import LayerScore
from explain.evaluation.plots import cascade_plot, curves_plot
from explain.evaluation.sanity import MEASURES
from explain.evaluation.splits import Split

OUTPUTS = ("scores.md", "scores.csv", "scores.nc", "summary.json")
LAYERS_CSV = "layers.csv"  # with ground truth and a layer sweep


def _cell(value: float | None, fmt: str | None) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if fmt is None:
        return "pass" if value >= 1 else "**fail**"
    return fmt.format(value)


def markdown_table(ev, rec) -> str:
    """The score table of every method, the random-order reference and the recommendation."""
    s = ev.settings
    cols = [
        c for c in keys.display_columns(s["baselines"]) if any(c[0] in r for r in ev.table.values())
    ]
    lines = [
        "| method | " + " | ".join(header for _, header, _ in cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for method, row in ev.table.items():
        name = method if METHODS[method].recommended else f"{method} (nr)"
        cells = [_cell(row.get(key), fmt) for key, _, fmt in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    first = next(iter(ev.table.values()))
    rnd = " · ".join(
        f"random-order ins−del ({b}): {first[keys.random_ins_del(b)]:.3f}" for b in s["baselines"]
    )
    lines += ["", rnd, "", recommendation_text(rec)]
    return "\n".join(lines)


def split_table(split: Split, methods: list[str]) -> str:
    """One split as markdown: the designs per bin, then a method per row and each score per bin.

    The model's integrated gradients against the truth are the same for every method, so they
    are given once per bin, beside the number of designs.
    """
    shown = {key: (header, fmt) for key, header, fmt in keys.DISPLAY}
    cols = [(k, b.name) for k in split.scores if k != keys.EB_IG_TRUTH for b in split.bins]
    notes = []
    for b, n in split.designs.items():
        ig_truth = split.table[methods[0]][b].get(keys.EB_IG_TRUTH)
        notes.append(
            f"{b}: {n} designs" + (f", ρ IG–truth {_cell(ig_truth, '{:.3f}')}" if n else "")
        )
    lines = [
        "; ".join(notes) + ".",
        "",
        "| method | " + " | ".join(f"{shown[k][0]} · {b}" for k, b in cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for method in methods:
        row = split.table[method]
        cells = [_cell(row[b].get(k), shown[k][1]) for k, b in cols]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def layers_table(layers: list[LayerScore], methods: list[str]) -> str:
    """The layer sweep as markdown: a row per layer with its grid (``cell`` = input cells per
    layer cell) and ceiling, then per method its Spearman with the truth on the input grid, at
    the layer's grid, and its share of the ceiling; ``methods`` in column order."""
    found = {(r.layer, r.method): r for r in layers}
    head = ["layer", "grid", "cell", "grid ceiling"]
    head += [f"{h} {m}" for m in methods for h in ("ρ truth", "ρ (layer)", "share")]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---|" * (len(head) - 1)]
    for first in {r.layer: r for r in layers}.values():
        cells = [
            first.layer,
            f"{first.height}×{first.width}",
            str(first.cell),
            f"{first.ceiling:.3f}",
        ]
        for m in methods:
            r = found.get((first.layer, m))
            values = (r.spearman_input, r.spearman_native, r.ceiling_fraction) if r else (None,) * 3
            cells += [_cell(v, "{:.3f}") for v in values]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sections(ev) -> str:
    """The ground-truth sections of ``scores.md`` after the table: splits and the layer sweep."""
    s = ev.settings
    if not s["ground_truth"]:
        return ""
    titles = {"saturation": "saturation regime |w(p*)|/ω_s", "peak_margin": "peak margin"}
    out = []
    for name, title in titles.items():
        out += ["", f"## Agreement with the truth by {title}", ""]
        if name in ev.splits:
            out.append(split_table(ev.splits[name], ev.methods))
        else:
            out.append("Not split: no saturation ratios were given (a campaign without ω_s).")
    if ev.layers is not None:
        designs = ev.layers[0].designs if ev.layers else 0
        out += [
            "",
            "## Agreement with the truth layer by layer",
            "",
            f"{', '.join(s['layer_sweep'])} at every feature layer on the input grid, "
            f"{designs} designs; share = ρ truth / grid ceiling; – = undefined at that layer.",
            "",
            layers_table(ev.layers, s["layer_sweep"]),
        ]
    return "\n".join(["", *out])


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())


def recommendation_text(rec) -> str:
    """The recommendation in words: the method (or why none), how sure, and the reasons."""
    ranking = ", ".join(f"{m} ({r:.1f})" for m, r in rec.ranking)
    wins = ", ".join(f"{m} {share:.0%}" for m, share in rec.wins.items())
    sure = f" Bootstrap over the designs: {wins}." if wins else ""
    if rec.method is None and rec.candidate is None:
        return (
            "**Recommendation:** none — no method passes the sanity checks and beats random "
            f"order.{sure}"
        )
    if rec.method is None:
        head = f"**Recommendation: not enough evidence** — leading candidate `{rec.candidate}`"
    else:
        head = f"**Recommendation: `{rec.method}`**"
    out = [f"{head} (mean rank over the criteria; ranking: {ranking}).{sure}"]
    out += [f"- {note}" for note in rec.notes]
    out += [f"- not eligible: `{m}` — {why}" for m, why in rec.rejected.items()]
    return "\n".join(out)


_ONE = {"units": "1"}
_SIMILARITY = (
    "similarity ({measure}) of the maps to the trained model's, after re-initialising the "
    "layers of step {step} ({mode} model randomisation)"
)


def _described(dims: tuple[str, ...], values: np.ndarray, long_name: str) -> tuple:
    return dims, np.asarray(values, dtype=np.float32), {**_ONE, "long_name": long_name}


def scores_dataset(ev, ids: np.ndarray, sample_ids: np.ndarray | None = None) -> xr.Dataset:
    """``scores.nc``: every per-design score ``(attribution_method, sample)``, the mean
    deletion/insertion curves and the randomisation similarities, each with ``units`` (all
    dimensionless: "1") and ``long_name``; CF and provenance global attributes."""
    s = ev.settings
    data = {
        name.replace("/", "_"): _described(
            (METHOD_DIM, "sample"), values, keys.per_sample_long_name(name)
        )
        for name, values in ev.per_sample.items()
    }
    for b, curves in ev.curves.items():
        for kind, values in curves.items():
            data[f"{kind}_curve_{b}"] = _described(
                (METHOD_DIM, "step"), values,
                f"mean {kind} curve (f(x_t) - f(b)) / (f(x) - f(b)), baseline {b}, over the "
                "designs without small_change",
            )  # fmt: skip
    coords = {
        METHOD_DIM: (METHOD_DIM, ev.methods, {**_ONE, "long_name": "attribution method"}),
        "sample": ("sample", ids, {**_ONE, "long_name": "position of the design in the campaign"}),
        "sample_id": (
            "sample",
            ids if sample_ids is None else sample_ids,
            {**_ONE, "long_name": "the design's own id in the campaign (its 'sample')"},
        ),
        "step": (
            "step",
            np.linspace(0, 1, s["steps"] + 1),
            {**_ONE, "long_name": "share of the cells replaced (deletion) or restored (insertion)"},
        ),
    }
    if ev.cascade is not None:
        for mode, result in (("cascade", ev.cascade), ("independent", ev.independent)):
            stack = np.stack(
                [np.stack([result.values[m][k] for k in MEASURES]) for m in ev.methods]
            )  # (method, measure, step, sanity_sample)
            dims = (METHOD_DIM, "measure", f"{mode}_step", "sanity_sample")
            text = _SIMILARITY.format(measure="measure", step=f"{mode}_step", mode=result.mode)
            data[f"{mode}_similarity"] = _described(dims, stack, text)
            coords[f"{mode}_step"] = (
                f"{mode}_step",
                list(result.steps),
                {**_ONE, "long_name": f"layer re-initialised at each step ({result.mode})"},
            )
        coords["measure"] = ("measure", list(MEASURES), {**_ONE, "long_name": "similarity measure"})
        n = stack.shape[-1]  # the sanity checks ran on the first designs
        coords["sanity_sample"] = (
            "sanity_sample",
            ids[:n],
            {**_ONE, "long_name": "index in the campaign of a design of the sanity checks"},
        )
    attrs = {k: json.dumps(v) if not isinstance(v, str) else v for k, v in s.items()}
    described = cf_attrs(
        "attribution methods of a surrogate scored",
        "evaluate",
        f"surrogate {Path(str(s.get('checkpoint', ''))).name} (roughness -> max vorticity), "
        f"its attribution maps scored by roughness-surrogate {software_version()}",
    )
    attrs = {**described, "software_version": software_version(), **attrs}
    return xr.Dataset(data, coords=coords, attrs=attrs)


def write_results(
    ev, rec, ids: np.ndarray, folder: Path, sample_ids: np.ndarray | None = None
) -> None:
    """scores.md/.csv/.nc, summary.json, the plots and, after a layer sweep, layers.csv.

    Each file is written atomically.
    """
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
        tmp.write_text("\n".join(header) + markdown_table(ev, rec) + sections(ev) + "\n")
    columns = sorted({k for row in ev.table.values() for k in row})
    rows = [[method, *[row.get(k, "") for k in columns]] for method, row in ev.table.items()]
    _write_csv(folder / "scores.csv", ["method", *columns], rows)
    if ev.layers is not None:
        rows = [list(r.row().values()) for r in ev.layers]
        _write_csv(folder / LAYERS_CSV, list(keys.LAYER_COLUMNS), rows)
    write_netcdf(scores_dataset(ev, ids, sample_ids), folder / "scores.nc")
    summary = {
        "settings": s,
        "table": ev.table,
        "recommendation": rec.method,
        "candidate": rec.candidate,
        "bootstrap_wins": rec.wins,
        "ranking": rec.ranking,
        "rejected": rec.rejected,
        "notes": rec.notes,
        "splits": {name: split.as_dict() for name, split in ev.splits.items()},
        "layers": None if ev.layers is None else [r.row() for r in ev.layers],
    }
    with atomic_path(folder / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2, default=float) + "\n")
    curves_plot(ev, folder / "curves")
    if ev.cascade is not None:
        cascade_plot(ev, folder / "cascade")
    if ev.layers:
        layers_plot(ev.layers, s["interpolation"], folder / "layers")
