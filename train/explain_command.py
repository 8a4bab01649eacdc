"""``surrogate explain``: attribution maps of a trained surrogate over a campaign, to netCDF."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from data.atomic import check_outputs
from data.errors import InputError
from explain.api import DEFAULT_METHODS
from explain.baselines import BASELINES
from explain.catalogue import METHODS
from explain.interpolation import MODES
from train.distributed import (
    Processes,
    add_process_options,
    processes,
    remove_staging,
    staging_folder,
)
from train.inputs import Inputs, load_checkpoint, open_inputs, options_parser, split_names

if TYPE_CHECKING:
    from data.simulator import VorticityModel
    from explain.plots import Design

EXAMPLE = (
    "example (after 'surrogate demo --out demo-out'): surrogate explain --checkpoint "
    "demo-out/run/checkpoints/last.ckpt --data demo-out/campaign.nc --out maps.nc --methods "
    "hirescam integrated-gradients --samples 0:16 "
    "--plots figures/"
)


def explain_parser() -> argparse.ArgumentParser:
    """Options of ``surrogate explain``; one not given takes :func:`explain_designs`'s default."""
    parser = options_parser(
        "surrogate explain",
        "Attribution maps of a trained surrogate for the designs of a campaign, written to one "
        "netCDF file (streamed, so memory stays bounded).",
        EXAMPLE,
    )
    parser.add_argument("--data", type=Path, help="campaign file (netCDF4/HDF5)")
    parser.add_argument("--out", type=Path, help="output netCDF file")
    parser.add_argument(
        "--methods",
        nargs="+",
        help=f"any of {', '.join(METHODS)}, or polycam for its three variants "
        f"(space- or comma-separated; default: {' '.join(DEFAULT_METHODS)}, with gradcam "
        "for cam where the layer has no pooled linear head)",
    )
    parser.add_argument("--layer", help="module to explain (default: the last spatial layer)")
    parser.add_argument(
        "--interpolation", help=f"comma-separated, from {', '.join(MODES)} (default: none,bilinear)"
    )
    parser.add_argument(
        "--samples",
        help="START:STOP, N (the first N), i,j,k, all (default), or train/val/test "
        "(the checkpoint's split)",
    )
    parser.add_argument(
        "--baseline",
        choices=list(BASELINES),
        help="reference of integrated gradients, Score-CAM and Poly-CAM (default smooth-wall)",
    )
    parser.add_argument(
        "--ig-steps", type=int, help="quadrature nodes of integrated gradients (default 32)"
    )
    parser.add_argument("--batch-size", type=int, help="designs per pass (default 64)")
    parser.add_argument("--relu", action="store_true", help="keep only positive attributions")
    parser.add_argument(
        "--normalise", action="store_true", help="scale each map to a largest magnitude of 1"
    )
    parser.add_argument("--plots", type=Path, help="folder for per-design figures (PNG and PDF)")
    parser.add_argument("--plot-samples", type=int, help="designs to plot (default 4)")
    parser.add_argument("--device", help="auto (GPU when present; default), cpu or cuda")
    add_process_options(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument(
        "--list-layers",
        action="store_true",
        help="list candidate layers, their resolution and cell size in delta (with --data: "
        "the campaign's cell spacing)",
    )
    return parser


def list_layers(model, shape: tuple[int, int], cell_size: float, source: str) -> None:
    """Print the candidate layers of ``model`` for an input grid ``shape``.

    Each layer on the roughness grid gets its cell size in delta: ``cell_size`` (the input
    cell spacing in delta, taken from ``source``) times the input cells per layer cell.
    """
    from explain.layers import candidate_layers, default_layer, pyramid_layers

    default, pyramid = default_layer(model, shape), pyramid_layers(model, shape)
    print(
        f"candidate layers for a {shape[0]}x{shape[1]} input of {cell_size:g} delta cells "
        f"({source}) (name, channels, map size, layer cell in input cells and delta):"
    )
    for info in candidate_layers(model, shape):
        flags = (
            ("default", info.name == default),
            ("poly-cam", info.name in pyramid),
            ("not on the roughness grid: no layer maps", not info.on_grid(shape)),
        )
        notes = [n for n, on in flags if on]
        tag = f"  [{', '.join(notes)}]" if notes else ""
        factor = shape[1] // info.width
        cell = f"{factor}x{factor} = {factor * cell_size:g} delta" if info.on_grid(shape) else "-"
        size = f"{info.height}x{info.width}"
        print(f"  {info.name:<34} {info.channels:>5}  {size:>7}  {cell:<18}{tag}".rstrip())


def input_cell_size(shape: tuple[int, int], data: Path | None) -> tuple[float, str]:
    """Input cell spacing in delta and where it comes from.

    The spacing of the campaign ``data``'s ``x`` coordinate when it has one, else the
    simulator's convention of a patch 16 delta long.
    """
    from data.campaign import open_campaign
    from data.physics import PhysicsParams

    if data is not None:
        with open_campaign(data, check_values=False) as campaign:  # only the coordinates
            xs = campaign["x"].values if "x" in campaign.coords else np.zeros(0)
        if len(xs) > 1:
            return float(xs[1] - xs[0]), f"from {data}"
    reference = PhysicsParams()
    cell = reference.size * reference.cell_size / max(shape[1], 1)
    return cell, "assumed: the simulator's 16-delta patch; --data CAMPAIGN gives its own"


def explain_command(args: Sequence[str]) -> int:
    """Run ``surrogate explain`` from command-line arguments; returns the exit status."""
    opts = vars(explain_parser().parse_args(args))
    if opts.pop("list_layers", False):
        model, _, _ = load_checkpoint(opts["checkpoint"])
        shape = tuple(int(n) for n in getattr(model, "grid_shape", (0, 0)))
        list_layers(model, shape, *input_cell_size(shape, opts.get("data")))
        return 0
    if "data" not in opts or "out" not in opts:
        raise InputError("--data and --out are required (unless --list-layers)")
    if "methods" in opts:
        opts["methods"] = split_names(opts["methods"])
    if "interpolation" in opts:
        opts["interpolation"] = split_names([opts["interpolation"]])
    explain_designs(**opts)
    return 0


def explain_designs(
    checkpoint: Path,
    data: Path,
    out: Path,
    *,
    methods: Sequence[str] | None = None,
    samples: str = "all",
    layer: str | None = None,
    interpolation: Sequence[str] = ("none", "bilinear"),
    batch_size: int = 64,
    relu: bool = False,
    normalise: bool = False,
    plots: Path | None = None,
    plot_samples: int = 4,
    device: str = "auto",
    devices: int = 1,
    accelerator: str | None = None,
    num_nodes: int = 1,
    overwrite: bool = False,
    baseline: str | None = None,
    ig_steps: int = 32,
) -> Path:
    """Maps of a checkpoint's predictions for the designs ``samples`` of a campaign, to ``out``.

    The maps stream to one netCDF file batch by batch (memory bounded by ``batch_size``);
    ``plots`` gets figures of the first ``plot_samples`` designs. With ``devices`` (or
    ``num_nodes``) above 1 the batches are shared out between processes
    (:mod:`train.distributed`); rank 0 merges their parts into ``out``, the same file bit for
    bit as one device writes. Returns ``out``.
    """
    out = Path(out)
    if out.suffix != ".nc":
        raise InputError(f"{out}: --out must be a .nc file")
    if batch_size < 1 or plot_samples < 0 or ig_steps < 1:
        raise InputError("--batch-size and --ig-steps must be >= 1 and --plot-samples >= 0")
    checkpoint, data = Path(checkpoint), Path(data)
    check_outputs([out], overwrite, inputs=[checkpoint, data])
    from explain.api import Explainer

    with open_inputs(checkpoint, data) as inputs:
        selected = inputs.select(samples)
        if plots is not None and plot_samples:  # the figures too, before any work
            figures = [design_stem(Path(plots), i) for i in selected[:plot_samples]]
            check_outputs(
                [f.with_name(f"{f.name}.{ext}") for f in figures for ext in ("png", "pdf")],
                overwrite, new_folder=True, inputs=[checkpoint, data],
            )  # fmt: skip
        with processes(devices, accelerator or device, num_nodes) as here:
            explainer = Explainer(
                inputs.model,
                inputs.shape,
                methods=None if methods is None else list(methods),
                layer=layer,
                interpolation=list(interpolation),
                relu=relu,
                normalise=normalise,
                device=str(here.device),
                baseline=baseline,
                ig_steps=ig_steps,
            )
            paths = (checkpoint, data, out)
            if not _write_maps(inputs, explainer, selected, paths, batch_size, overwrite, here):
                return out  # another rank's part: rank 0 writes the file and the plots
        if plots is not None and plot_samples:
            written = plot_designs(out, inputs.campaign, Path(plots), plot_samples)
            print(f"plots: {len(written)} files in {plots}")
    return out


def _write_maps(
    inputs: Inputs, explainer, selected: np.ndarray, paths, batch_size, overwrite, here: Processes
) -> bool:
    """Stream the maps of the ``selected`` designs to ``out``, self-described (CF): positions
    of every grid, units and long names, provenance of the checkpoint and the campaign.

    Among several processes each writes the batches ``here`` takes to its part and rank 0
    merges the parts in batch order; returns whether this process wrote ``out``.
    """
    from data.campaign import POSITION_ATTRS, SAMPLE_ID_ATTRS, sample_ids
    from data.provenance import cf_attrs, provenance
    from explain.io import with_positions, write_batches

    checkpoint, data, out = paths
    roughness = _Slice(inputs.campaign["roughness"].variable, selected)  # lazy, batch by batch
    simulated = inputs.campaign["max_vorticity"].variable
    ys, xs, units = _positions(inputs.campaign)
    inputs_attrs = provenance(checkpoint, data)  # reads each file once
    described = cf_attrs(
        "attribution maps of a surrogate of the maximum wake vorticity",
        "explain",
        f"surrogate {checkpoint.name} (roughness -> max vorticity), explained by "
        f"roughness-surrogate {inputs_attrs['software_version']}",
    )
    start_time = time.perf_counter()
    n, starts = len(selected), here.batches(len(selected), batch_size)

    def batches():
        size = sum(min(batch_size, n - a) for a in starts)
        with tqdm(total=size, unit="design", desc="explaining", disable=not here.main) as bar:
            for a in starts:
                ds = explainer.batch(roughness[a : a + batch_size], first_sample=a)
                ids = selected[ds["sample"].values]
                own = sample_ids(inputs.campaign, ids)
                ds = ds.assign_coords(sample=ids, sample_id=("sample", own))
                ds = with_positions(ds, ys, xs, units)
                ds["sample"].attrs.update(POSITION_ATTRS)
                ds["sample_id"].attrs.update(SAMPLE_ID_ATTRS)
                ds["simulated"] = ("sample", simulated[ids].values)
                ds["simulated"].attrs.update(units="U_e/delta", long_name="simulated max vorticity")
                explainer.check_cam()
                bar.update(ds.sizes["sample"])
                yield ds

    def final_attrs() -> dict[str, str | float]:
        return {**explainer.attrs(), **described, **inputs_attrs}

    if here.world == 1:
        write_batches(out, batches(), n, overwrite, final_attrs)
    else:
        folder = staging_folder(out)
        folder.mkdir(parents=True, exist_ok=True)
        size = sum(min(batch_size, n - a) for a in starts)
        part = here.part(folder, ".nc")
        write_batches(part, batches(), size, True, lambda: {**final_attrs(), **_state(explainer)})
        here.barrier()
        if not here.main:
            return False
        _merge_parts(here, folder, explainer, out, n, batch_size, overwrite, final_attrs)
        remove_staging(folder)
    print(f"maps of {n} designs -> {out} ({time.perf_counter() - start_time:.1f} s)")
    if "cam" in explainer.methods:
        print(
            f"CAM check: |prediction - bias - sum(map)| <= {explainer.cam_residual:.2e} U_e/delta "
            f"(relative {explainer.cam_relative_residual:.1e})"
        )
    if "integrated-gradients" in explainer.methods:
        print(
            f"integrated gradients: |sum(map) - (f(x) - f(b))| <= {explainer.ig_residual:.2e} "
            f"U_e/delta (relative {explainer.ig_relative_residual:.1e}; per design: ig_residual)"
        )
    return True


_STATE = ("ig_residual", "ig_scale", "cam_residual", "cam_scale")  # largest seen, per process


def _state(explainer) -> dict[str, float]:
    return {f"part_{name}": float(getattr(explainer, name)) for name in _STATE}


def _merge_parts(here, folder, explainer, out, n, batch_size, overwrite, final_attrs) -> None:
    """Rank 0: the parts of every process into ``out``, batch by batch in the original order."""
    import xarray as xr

    from explain.io import write_batches

    parts = [
        xr.open_dataset(here.part(folder, ".nc", rank), engine="h5netcdf")
        for rank in range(here.world)
    ]
    try:
        for name in _STATE:  # the largest over all processes, as one process would find it
            setattr(explainer, name, max(float(p.attrs[f"part_{name}"]) for p in parts))
        explainer.check_cam()

        def merged():
            for j in range(-(-n // batch_size)):  # every batch, in order
                offset = (j // here.world) * batch_size  # its place in its process's part
                ds = parts[j % here.world].isel(sample=slice(offset, offset + batch_size))
                ds = ds.load()
                ds.attrs = {}
                yield ds

        write_batches(out, merged(), n, overwrite, final_attrs)
    finally:
        for part in parts:
            part.close()


class _Slice:
    """Rows ``selected`` of a lazy variable, sliceable from 0 (what ``Explainer.batches`` wants)."""

    def __init__(self, variable, selected: np.ndarray) -> None:
        self.variable, self.selected = variable, selected

    def __len__(self) -> int:
        return len(self.selected)

    def __getitem__(self, index: slice) -> np.ndarray:
        ids = self.selected[index]
        if ids[-1] - ids[0] + 1 == len(ids):  # contiguous: one hyperslab read
            return self.variable[int(ids[0]) : int(ids[-1]) + 1].values
        return self.variable[ids].values


def _positions(campaign) -> tuple[np.ndarray, np.ndarray, str]:
    """Cell centres ``(y,)``, ``(x,)`` of a campaign and their units: its ``y``/``x``
    coordinates (delta), or where it has none, cell indices plus one half in cells ("1")."""
    if "y" in campaign.coords and "x" in campaign.coords:
        return campaign["y"].values, campaign["x"].values, campaign["x"].attrs.get("units", "delta")
    return np.arange(campaign.sizes["y"]) + 0.5, np.arange(campaign.sizes["x"]) + 0.5, "1"


def design_facts(campaign, sample: int, physics: VorticityModel | None = None) -> Design:
    """What the figure of design ``sample`` shows besides its maps, read from the campaign.

    ``physics`` (a :class:`data.simulator.VorticityModel` of the campaign's parameters, if it
    records them) gives the vorticity over patch and wake.
    """
    from explain.plots import Design

    design = campaign.isel(sample=int(sample))

    def value(name: str):
        return design[name].values if name in design else None

    has_peak = "peak_y" in design and "peak_x" in design
    roughness = design["roughness"].values
    return Design(
        roughness=roughness,
        ys=campaign["y"].values if "y" in campaign.coords else None,
        xs=campaign["x"].values if "x" in campaign.coords else None,
        contribution=value("contribution"),
        simulated=float(design["max_vorticity"]),
        peak=(int(design["peak_y"]), int(design["peak_x"])) if has_peak else None,
        peak_margin=float(design["peak_margin"]) if "peak_margin" in design else None,
        vorticity=physics.field(roughness[None])[0] if physics is not None else None,
        wake=physics.params.wake if physics is not None else 0,
    )


def campaign_physics(campaign) -> VorticityModel | None:
    """The reduced-order model of a synthetic campaign (its ``model_*`` attributes), or None."""
    from data.physics import PhysicsParams
    from data.simulator import VorticityModel

    params = PhysicsParams.from_attrs(campaign.attrs)
    if params is None or (params.size, params.size) != tuple(campaign["roughness"].shape[1:]):
        return None
    return VorticityModel(params)


def design_stem(folder: Path, sample: int) -> Path:
    """Where the figure of design ``sample`` goes (``.png`` and ``.pdf`` are added)."""
    return folder / f"design-{int(sample):05d}"


def plot_designs(maps_path: Path, campaign, folder: Path, count: int) -> list[Path]:
    """Figures of the first ``count`` designs of a ``surrogate explain`` output."""
    import xarray as xr

    from explain.evaluation.groundtruth import MIN_MARGIN
    from explain.plots import attribution_figure

    written: list[Path] = []
    folder.mkdir(parents=True, exist_ok=True)
    physics = campaign_physics(campaign)
    with xr.open_dataset(maps_path, engine="h5netcdf") as maps:
        for sample in maps["sample"].values[:count]:
            written += attribution_figure(
                maps.sel(sample=sample).load(),
                design_facts(campaign, int(sample), physics),
                design_stem(folder, int(sample)),
                title=f"design {int(sample)}",
                min_margin=MIN_MARGIN,
            )
    return written
