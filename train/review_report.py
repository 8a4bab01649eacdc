"""The design review as a report: ``review.md`` and ``review.pdf`` from ``review.json``.

The review dict (what ``review.json`` holds) carries every number. :func:`summary_lines`,
:func:`design_lines` and the table rows beside them are the only places numbers become text,
all through :func:`fmt`, so the Markdown, the PDF and the JSON show the same values.

The PDF (landscape A4) has a summary page (context, caveat, provenance, model error by
predicted value, method, one row per design) and one page per design: the roughness and the
chosen map with the numbered region boxes, the what-if changes as bars, each CAM method with
and without interpolation, and the design's lines. Colours follow :mod:`explain.plots`:
heights in ``BrBG``, signed maps in ``RdBu_r`` centred at 0, never-negative maps in ``Reds``;
axes in delta, flow towards +x, colourbars in units, titles say what 0 means.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import MaxNLocator

from data.atomic import atomic_path
from data.errors import InputError
from explain.catalogue import METHODS

UNITS = "U_e/delta"
A4_LANDSCAPE = (11.69, 8.27)  # inches
FONT = 7.5  # points; nothing on a page is smaller than 7
HEIGHT_CMAP, SIGNED_CMAP, NON_NEGATIVE_CMAP = "BrBG", "RdBu_r", "Reds"
MODE_TITLES = {"none": "no interpolation", "nearest": "nearest", "bilinear": "bilinear",
               "bicubic": "bicubic"}  # fmt: skip
WHAT_IF_STYLE = {"wall": ("tab:blue", "predicted, region to the wall"),
                 "blurred": ("#9ecae1", "predicted, region to the blurred design"),
                 "random": ("0.6", "predicted, random region to the wall (reference)")}  # fmt: skip
_PAGE_INCHES = 7.4  # of a design page's height for its rows, below the title
_BOX = {"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8}  # label ground
_TEXT_HEIGHT_MAX = 3.4  # inches of a design page given to its lines
_LINE_INCHES = FONT * 1.25 / 72
_CHARS_PER_INCH = 72 / (FONT * 0.55)  # DejaVu Sans, mixed text and digits


@dataclass(frozen=True)
class DesignFigure:
    """The arrays of one design's page; the numbers come from the review dict.

    Attributes:
        heights: Roughness ``(y, x)`` in delta.
        ys: Spanwise cell centres ``(y,)`` in delta, evenly spaced.
        xs: Streamwise cell centres ``(x,)`` in delta, evenly spaced.
        map: The chosen method's signed map ``(y, x)``.
        map_units: Units of ``map``, e.g. ``"U_e/delta per cell"``.
        masks: Bool ``(y, x)`` masks of the regions, in rank order.
        cam_pairs: ``{method: {mode: map}}`` with ``mode`` ``"none"`` and one interpolation
            mode (e.g. ``"bilinear"``); a ``"none"`` map may be at the layer's coarser grid.
    """

    heights: np.ndarray
    ys: np.ndarray
    xs: np.ndarray
    map: np.ndarray
    map_units: str
    masks: list[np.ndarray] = field(default_factory=list)
    cam_pairs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def fmt(value: float | None) -> str:
    """A number with 4 decimals (``-0.0021``), in e-notation below 1e-4 or from 1e6 so no
    value reads as 0.0000; ``"n/a"`` for None, NaN or Inf."""
    if value is None or not math.isfinite(float(value)):
        return "n/a"
    v = float(value)
    return f"{v:.3e}" if v != 0 and not 1e-4 <= abs(v) < 1e6 else f"{v:.4f}"


def _percent(fraction: float) -> str:
    return f"{fmt(100 * fraction)}%"


def _level(review: dict[str, Any]) -> str:
    return f"{100 * review['model']['level']:g}%"


def summary_lines(review: dict[str, Any]) -> list[str]:
    """The model's interval and ensemble, the method, and its scores, one line each."""
    model, method = review["model"], review["method"]
    scores = method.get("scores") or {}
    sanity = scores.get("sanity") or "not run"
    return [
        f"prediction interval: {_level(review)} split-conformal, half-width "
        f"{fmt(model['halfwidth'])} {UNITS}, from {model['calibration_samples']} "
        "calibration samples",
        f"ensemble: {model['members']} members",
        f"attribution method: {method['name']}, {method['why']}; maps in {method['units']}",
        f"method scores: sanity checks {sanity}, faithfulness {fmt(scores.get('faithfulness'))}, "
        f"ground-truth Spearman {fmt(scores.get('ground_truth_spearman'))}",
    ]


def _region_line(r: dict[str, Any], units: str) -> str:
    verb = "raises" if r["sign"] > 0 else "lowers"
    return (
        f"region {r['rank']} {verb} the prediction: share {_percent(r['share'])} of |map|, "
        f"sum {fmt(r['attribution'])} {units}; centroid x {fmt(r['centroid_x'])}, "
        f"y {fmt(r['centroid_y'])} delta; box x [{fmt(r['box_x0'])}, {fmt(r['box_x1'])}], "
        f"y [{fmt(r['box_y0'])}, {fmt(r['box_y1'])}] delta; area {fmt(r['area'])} delta^2; "
        f"height peak {fmt(r['peak_height'])}, mean {fmt(r['mean_height'])} delta"
    )


def _what_if_line(w: dict[str, Any]) -> str:
    target = "the wall" if w["to"] == "wall" else "the blurred design"
    if w["edit"] == "random":
        head = f"reference: smooth a random region like region {w['rank']} to {target}"
    else:
        head = f"smooth region {w['rank']} to {target}"
    simulated = w.get("true_change")
    resim = f", re-simulated {fmt(simulated)}" if simulated is not None else ""
    return f"{head}: predicted change {fmt(w['change'])}{resim} {UNITS}"


def _domain_lines(domain: dict[str, Any]) -> list[str]:
    findings = domain.get("findings", [])
    failed = [f for f in findings if not f["passed"]]
    if domain["in_domain"]:
        return [f"domain: inside the training domain (all {len(findings)} checks passed)"]
    head = f"domain: OUTSIDE the training domain ({len(failed)} of {len(findings)} checks failed)"
    return [head, *(f"failed: {f['message']}" for f in failed)]


def _prediction_lines(review: dict[str, Any], d: dict[str, Any]) -> list[str]:
    lo, hi = d["interval"]
    lines = [
        f"prediction {fmt(d['prediction'])} {UNITS}, {_level(review)} interval "
        f"[{fmt(lo)}, {fmt(hi)}]"
    ]
    if d.get("spread") is not None:
        members = ", ".join(fmt(m) for m in d.get("members", []))
        lines.append(f"ensemble spread {fmt(d['spread'])} {UNITS} (members: {members})")
    if d.get("simulated") is not None:
        inside = "inside" if lo <= d["simulated"] <= hi else "OUTSIDE"
        lines.append(
            f"simulated {fmt(d['simulated'])} {UNITS}, {inside} the interval "
            f"(prediction - simulated = {fmt(d['prediction'] - d['simulated'])})"
        )
    else:
        lines.append("simulated: not known for this design")
    e = d["error_near"]
    out = "; EXTRAPOLATED: the prediction is outside the tested range" if e["extrapolated"] else ""
    lines.append(
        f"test error near this value: bias {fmt(e['bias'])}, RMSE {fmt(e['rmse'])} {UNITS} "
        f"(n = {e['n']}, predictions in [{fmt(e['lo'])}, {fmt(e['hi'])}]){out}"
    )
    return lines


def _check_lines(d: dict[str, Any]) -> list[str]:
    lines = []
    fd = d.get("fd_check")
    if fd:
        lines.append(
            f"finite-difference check: map's first order {fmt(fd['first_order'])}, model "
            f"{fmt(fd['finite_difference'])} {UNITS} per delta; ratio {fmt(fd['ratio'])}, "
            f"relative error {fmt(fd['relative_error'])}"
        )
    trust = d.get("trust")
    if trust:
        verdict = "faster" if trust["faster_than_random"] else "NOT faster"
        lines.append(
            f"trust: deletion AUC {fmt(trust['deletion_auc_map'])} in the map's order vs. "
            f"{fmt(trust['deletion_auc_random'])} in random order: the prediction falls "
            f"{verdict} than at random"
        )
    return lines


def design_lines(review: dict[str, Any], i: int) -> list[str]:
    """Every number of design ``i`` as one line each, units included."""
    d = review["designs"][i]
    units = review["method"]["units"]
    regions = [_region_line(r, units) for r in d.get("regions", [])]
    return [
        *_prediction_lines(review, d),
        *_domain_lines(d["domain"]),
        *(regions or ["regions: none above the threshold"]),
        *(_what_if_line(w) for w in d.get("what_ifs", [])),
        *_check_lines(d),
    ]


def error_rows(review: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The model's test error binned by predicted value: header and rows."""
    header = [f"predicted [{UNITS}]", "n", f"bias [{UNITS}]", f"RMSE [{UNITS}]", "|error| q90"]
    rows = [[f"[{fmt(b['lo'])}, {fmt(b['hi'])}]", str(b["n"]), fmt(b["bias"]), fmt(b["rmse"]),
             fmt(b["abs_q90"])] for b in review["model"]["binned_errors"]]  # fmt: skip
    return header, rows


def design_rows(review: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """One row per design: label, prediction, interval, in domain, top region."""
    header = ["design", f"prediction [{UNITS}]", f"{_level(review)} interval", "in domain",
              "top region"]  # fmt: skip
    rows = []
    for d in review["designs"]:
        top = d["regions"][0] if d.get("regions") else None
        region = "none" if top is None else (
            f"{top['rank']}: {'raises' if top['sign'] > 0 else 'lowers'}, "
            f"share {_percent(top['share'])}")  # fmt: skip
        lo, hi = d["interval"]
        domain = "yes" if d["domain"]["in_domain"] else "NO"
        rows.append([d["label"], fmt(d["prediction"]), f"[{fmt(lo)}, {fmt(hi)}]", domain, region])
    return header, rows


def region_rows(review: dict[str, Any], i: int) -> tuple[list[str], list[list[str]]]:
    """Design ``i``'s regions as a table (lengths in delta)."""
    header = ["rank", "effect", "share", "centroid x, y", "box x", "box y", "area [delta^2]",
              "peak / mean height"]  # fmt: skip
    rows = [[str(r["rank"]), "raises" if r["sign"] > 0 else "lowers", _percent(r["share"]),
             f"{fmt(r['centroid_x'])}, {fmt(r['centroid_y'])}",
             f"[{fmt(r['box_x0'])}, {fmt(r['box_x1'])}]",
             f"[{fmt(r['box_y0'])}, {fmt(r['box_y1'])}]", fmt(r["area"]),
             f"{fmt(r['peak_height'])} / {fmt(r['mean_height'])}"]
            for r in review["designs"][i].get("regions", [])]  # fmt: skip
    return header, rows


def provenance_rows(review: dict[str, Any]) -> list[list[str]]:
    """``[item, value, sha256]`` for the checkpoints, inputs and software."""
    p = review["provenance"]
    rows = [[f"checkpoint {k}", c["path"], c["sha256"]]
            for k, c in enumerate(p["checkpoints"], start=1)]  # fmt: skip
    rows.append(["design file", p["design_file"], p["design_sha256"]])
    rows.append(["campaign", p.get("campaign") or "none", p.get("campaign_sha256") or ""])
    rows.append(["software", p["software_version"], ""])
    rows.append(["git commit", p.get("git_commit") or "unknown (not a git checkout)", ""])
    rows.append(["created", review["created"], ""])
    return rows


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    cells = [[c.replace("|", "\\|") for c in row] for row in [header, *rows]]
    lines = ["| " + " | ".join(row) + " |" for row in cells]
    return [lines[0], "|" + "---|" * len(header), *lines[1:], ""]


def write_markdown(review: dict[str, Any], path: str | Path) -> None:
    """The review as Markdown, written atomically to ``path``."""
    out = [f"# {review['title']}", "", f"Created {review['created']}.", ""]
    out += ["## Context of use", "", review["context_of_use"], "", "## Caveat", "",
            review["caveat"], "", "## Provenance", ""]  # fmt: skip
    out += _md_table(["item", "value", "sha256"], provenance_rows(review))
    out += ["## Model error by predicted value", "", *_md_table(*error_rows(review))]
    out += ["## Model, method and trust", "", *(f"- {s}" for s in summary_lines(review)), ""]
    out += ["## Designs", "", *_md_table(*design_rows(review))]
    for i, d in enumerate(review["designs"]):
        out += [f"## {d['label']} (sample {d['sample']})", ""]
        out += [*(f"- {line}" for line in design_lines(review, i)), ""]
        header, rows = region_rows(review, i)
        out += _md_table(header, rows) if rows else []
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(out), encoding="utf-8")


def _wrap(lines: list[str], width: int) -> list[list[str]]:
    """Each line wrapped to ``width`` characters, continuation lines indented."""
    return [textwrap.wrap(line, width, subsequent_indent="    ", break_on_hyphens=False,
                          break_long_words=False) or [""] for line in lines]  # fmt: skip


def _text_block(ax, text: str, size: float = FONT) -> None:
    """``text`` from the axes' top left corner; the axes only reserve its room."""
    ax.axis("off")
    t = ax.text(0, 1, text, transform=ax.transAxes, va="top", ha="left", fontsize=size,
                parse_math=False, linespacing=1.25)  # fmt: skip
    t.set_in_layout(False)


def _table(ax, header: list[str], rows: list[list[str]], widths: list[float], title: str):
    ax.axis("off")
    ax.set_title(title, loc="left", fontsize=9, weight="bold")
    table = ax.table(cellText=rows or [["-"] * len(header)], colLabels=header, colWidths=widths,
                     cellLoc="left", bbox=[0, 0, 1, 1])  # fmt: skip
    table.auto_set_font_size(False)
    table.set_fontsize(FONT)
    for (r, _), cell in table.get_celld().items():
        cell.set_linewidth(0.4)
        cell.PAD = 0.02  # of the cell's width; matplotlib's 0.1 indents wide columns far
        if r == 0:
            cell.set_facecolor("0.9")
            cell.set_text_props(weight="bold")


def _summary_page(review: dict[str, Any]) -> plt.Figure:
    fig = plt.figure(figsize=A4_LANDSCAPE)
    fig.suptitle(review["title"], fontsize=12, weight="bold", y=0.975)
    head = [f"Created {review['created']}.", f"Context of use: {review['context_of_use']}",
            f"Caveat: {review['caveat']}"]  # fmt: skip
    head_lines = [w for block in _wrap(head, 165) for w in block]
    # long paths keep their tail; the Markdown has them whole
    prov = [
        [item, v if len(v) < 63 else "…" + v[-61:], sha] for item, v, sha in provenance_rows(review)
    ]
    err_header, err = error_rows(review)
    method = [w for block in _wrap(summary_lines(review), 78) for w in block]
    des_header, des = design_rows(review)
    heights = [len(head_lines) * 0.6, len(prov) + 1, max(len(err) + 1, len(method) * 0.8),
               len(des) + 1]  # fmt: skip
    gs = fig.add_gridspec(4, 2, height_ratios=heights, width_ratios=[1, 1], left=0.04,
                          right=0.96, top=0.92, bottom=0.03, hspace=0.6, wspace=0.05)  # fmt: skip
    _text_block(fig.add_subplot(gs[0, :]), "\n".join(head_lines), size=8)
    _table(fig.add_subplot(gs[1, :]), ["item", "value", "sha256"], prov, [0.12, 0.45, 0.43],
           "Provenance")  # fmt: skip
    _table(fig.add_subplot(gs[2, 0]), err_header, err, [0.32, 0.1, 0.2, 0.2, 0.18],
           "Model test error by predicted value")  # fmt: skip
    ax = fig.add_subplot(gs[2, 1])
    ax.set_title("Model, method and trust", loc="left", fontsize=9, weight="bold")
    _text_block(ax, "\n".join(method))
    _table(fig.add_subplot(gs[3, :]), des_header, des, [0.16, 0.16, 0.2, 0.1, 0.38], "Designs")
    return fig


def _extent(ys: np.ndarray, xs: np.ndarray) -> list[float]:
    """imshow extent whose pixel centres are the cell centres, in delta."""
    dy = float(ys[1] - ys[0]) if len(ys) > 1 else 1.0
    dx = float(xs[1] - xs[0]) if len(xs) > 1 else 1.0
    return [xs[0] - dx / 2, xs[-1] + dx / 2, ys[0] - dy / 2, ys[-1] + dy / 2]


def _units_label(units: str) -> str:
    table = {"U_e/delta": r"$U_e/\delta$", "delta": r"$\delta$"}
    return " ".join(table.get(w, w) for w in units.split(" "))


def _image(fig, ax, field, extent, label: str, cmap: str, title: str, limit: float = 0) -> None:
    """``field`` with a colourbar labelled ``label``; limits ``[-limit, limit]`` (``[0, limit]`` in
    ``Reds``), ``limit`` the largest ``|field|`` unless given."""
    field = np.asarray(field, dtype=float)
    limit = limit or float(np.abs(field).max()) or 1.0
    vmin = 0.0 if cmap == NON_NEGATIVE_CMAP else -limit
    image = ax.imshow(field, origin="lower", extent=extent, cmap=cmap, vmin=vmin, vmax=limit,
                      interpolation="nearest", aspect="equal")  # fmt: skip
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02)
    bar.set_label(label, fontsize=7)
    bar.ax.tick_params(labelsize=7)
    ax.tick_params(labelsize=7)
    ax.set_xlabel(r"$x/\delta$ (streamwise)", fontsize=7)
    ax.set_ylabel(r"$y/\delta$ (spanwise)", fontsize=7)
    ax.set_title(title, fontsize=7.5)


def _regions(ax, d: dict[str, Any], fd: DesignFigure) -> None:
    """Region outlines (dotted, from the masks) and numbered boxes (from the review)."""
    for mask in fd.masks:
        if np.any(mask):
            ax.contour(fd.xs, fd.ys, np.asarray(mask, float), levels=[0.5], colors="k",
                       linewidths=0.5, linestyles=":")  # fmt: skip
    for r in d.get("regions", []):
        x0, x1, y0, y1 = r["box_x0"], r["box_x1"], r["box_y0"], r["box_y1"]
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="k", lw=1.0))
        ax.text(x0, y1, str(r["rank"]), ha="left", va="top", fontsize=7, weight="bold", bbox=_BOX)


def _zero_means(name: str) -> str:
    method = METHODS.get(name)
    return method.reference.format(baseline="the baseline") if method else "0 = no attribution"


def _top_row(fig, spec, review: dict[str, Any], d: dict[str, Any], fd: DesignFigure) -> None:
    axes = [fig.add_subplot(spec[k]) for k in range(3)]
    extent = _extent(fd.ys, fd.xs)
    _image(fig, axes[0], fd.heights, extent, r"height [$\delta$]", HEIGHT_CMAP,
           "roughness height (0 = smooth wall)\nboxes = regions, numbered by rank")  # fmt: skip
    axes[0].annotate("flow", xy=(0.4, 0.93), xytext=(0.04, 0.93), xycoords="axes fraction",
                     fontsize=7, va="center", arrowprops={"arrowstyle": "->", "lw": 1.2},
                     bbox=_BOX)  # fmt: skip
    name = review["method"]["name"]
    title = f"{name} map (chosen method)\n{_zero_means(name)}"
    _image(fig, axes[1], fd.map, extent, _units_label(fd.map_units), SIGNED_CMAP, title)
    for ax in axes[:2]:
        _regions(ax, d, fd)
    _what_if_bars(axes[2], d)


def _what_if_bars(ax, d: dict[str, Any]) -> None:
    """One group of bars per region: each edit's predicted change, re-simulated beside it."""
    rows = d.get("what_ifs", [])
    ax.set_title("what-if edits: change of the prediction\n0 = no change", fontsize=7.5)
    if not rows:
        ax.axis("off")
        return
    ranks = list(dict.fromkeys(r["rank"] for r in rows))
    known = any(r.get("true_change") is not None for r in rows)
    handles = {}
    for g, rank in enumerate(ranks):
        group = [r for r in rows if r["rank"] == rank]
        slot = 0.8 / len(group)
        for k, r in enumerate(group):
            y, h = g - 0.4 + slot * (k + 0.5), slot * (0.45 if known else 0.9)
            colour, label = WHAT_IF_STYLE["random" if r["edit"] == "random" else r["to"]]
            ax.barh(y - h / 2 * known, r["change"], height=h, color=colour)
            handles[label] = Patch(color=colour, label=label)
            if r.get("true_change") is not None:
                ax.barh(y + h / 2, r["true_change"], height=h, color="tab:orange", hatch="///",
                        ec="w", lw=0)  # fmt: skip
    if known:
        handles["re-simulated"] = Patch(fc="tab:orange", hatch="///", ec="w", label="re-simulated")
    ax.set_yticks(range(len(ranks)), [f"region {k}" for k in ranks], fontsize=7)
    ax.set_ylim(len(ranks) - 0.5, -0.5)
    ax.axvline(0, color="k", lw=0.6)
    ax.set_xlabel(r"change [$U_e/\delta$]", fontsize=7)
    ax.tick_params(labelsize=7)
    ax.xaxis.set_major_locator(MaxNLocator(4))
    # below the tick labels and the axis label whatever the axes' height (pad in font sizes)
    ax.legend(handles=list(handles.values()), fontsize=7, loc="upper center",
              bbox_to_anchor=(0.5, 0), borderaxespad=4.2, frameon=False)  # fmt: skip


def _cam_row(fig, spec, fd: DesignFigure) -> None:
    pairs = list(fd.cam_pairs.items())
    grid = spec.subgridspec(1, 2 * len(pairs))
    extent = _extent(fd.ys, fd.xs)
    for k, (name, modes) in enumerate(pairs):
        method = METHODS.get(name)
        cmap = NON_NEGATIVE_CMAP if method and method.non_negative else SIGNED_CMAP
        units = method.units if method else "arbitrary units"
        # one colour limit per method, so a colour means the same with and without
        limit = max(float(np.abs(m).max()) for m in modes.values()) or 1.0
        order = sorted(modes, key=lambda m: m != "none")[:2]
        for j, mode in enumerate(order):
            ax = fig.add_subplot(grid[2 * k + j])
            title = f"{name}: {MODE_TITLES.get(mode, mode)}\n{_zero_means(name)}"
            title = "\n".join(textwrap.fill(line, 36) for line in title.split("\n"))
            _image(fig, ax, modes[mode], extent, _units_label(units), cmap, title, limit)


def _columns(lines: list[str]) -> tuple[list[str], float]:
    """The lines in 2 or 3 columns (a line never split between columns) and their inches."""
    for count in (2, 3):
        wrapped = _wrap(lines, int(A4_LANDSCAPE[0] * _CHARS_PER_INCH / count) - 4)
        total = sum(len(w) for w in wrapped)
        columns, current, rows = [], [], 0
        for block in wrapped:
            full = rows + len(block) > math.ceil(total / count)
            if current and full and len(columns) < count - 1:
                columns.append(current)
                current, rows = [], 0
            current.extend(block)
            rows += len(block)
        columns.append(current)
        inches = max(len(c) for c in columns) * _LINE_INCHES + 0.1
        if inches <= _TEXT_HEIGHT_MAX or count == 3:
            return ["\n".join(c) for c in columns], inches


def _design_page(review: dict[str, Any], i: int, fd: DesignFigure) -> plt.Figure:
    d = review["designs"][i]
    lines = design_lines(review, i)
    columns, text_inches = _columns(lines)
    fig = plt.figure(figsize=A4_LANDSCAPE, layout="constrained")
    fig.suptitle(f"{d['label']} (sample {d['sample']}): {lines[0]}", fontsize=10, weight="bold")
    images = [2.9, *([2.2] if fd.cam_pairs else [])]
    ratios = [r * (_PAGE_INCHES - text_inches) / sum(images) for r in images] + [text_inches]
    outer = fig.add_gridspec(len(ratios), 1, height_ratios=ratios)
    _top_row(fig, outer[0].subgridspec(1, 3, width_ratios=[1, 1, 0.9]), review, d, fd)
    if fd.cam_pairs:
        _cam_row(fig, outer[1], fd)
    text = outer[-1].subgridspec(1, len(columns))
    for k, column in enumerate(columns):
        _text_block(fig.add_subplot(text[k]), column)
    return fig


def page_texts(fig: plt.Figure) -> list[str]:
    """Every string drawn on ``fig``: figure texts, titles, labels, texts, tables, legends."""
    out = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        out += [ax.get_title(loc) for loc in ("left", "center", "right")]
        out += [ax.get_xlabel(), ax.get_ylabel(), *(t.get_text() for t in ax.texts)]
        out += [t.get_text() for t in ax.get_yticklabels()]
        for table in ax.tables:
            out += [cell.get_text().get_text() for cell in table.get_celld().values()]
        legend = ax.get_legend()
        out += [t.get_text() for t in legend.get_texts()] if legend else []
    return [t for t in out if t]


def _check(review: dict[str, Any], figures: list[DesignFigure]) -> None:
    if len(figures) != len(review["designs"]):
        raise InputError(f"figures has {len(figures)} entries; expected one per design "
                         f"({len(review['designs'])})")  # fmt: skip
    for k, fd in enumerate(figures):
        shape = (len(fd.ys), len(fd.xs))
        for name in ("heights", "map"):
            got = np.shape(getattr(fd, name))
            if got != shape:
                raise InputError(f"figures[{k}].{name} has shape {got}; expected {shape} "
                                 "(len(ys), len(xs))")  # fmt: skip


def write_pdf(
    review: dict[str, Any], figures: list[DesignFigure], path: str | Path
) -> list[list[str]]:
    """The review as a PDF: a summary page, then one page per design; written atomically.

    Returns:
        The strings drawn on each page, in page order.
    """
    _check(review, figures)
    builders = [lambda: _summary_page(review)]
    builders += [lambda i=i, fd=fd: _design_page(review, i, fd) for i, fd in enumerate(figures)]
    pages = []
    with atomic_path(path) as tmp, PdfPages(tmp, metadata={"Title": review["title"]}) as pdf:
        for build in builders:
            fig = build()
            try:
                pages.append(page_texts(fig))
                pdf.savefig(fig)
            finally:
                plt.close(fig)
    return pages
