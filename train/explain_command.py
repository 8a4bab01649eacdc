"""``surrogate explain``: attribution maps of a trained surrogate over a campaign, to netCDF."""

from __future__ import annotations

import argparse
import hashlib
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from data.errors import InputError
from explain.catalogue import METHODS
from explain.interpolation import MODES

EXAMPLE = (
    "example: surrogate explain --checkpoint runs/demo/checkpoints/best.ckpt "
    "--data campaigns/demo.nc --out maps.nc --methods cam hirescam layercam --samples 0:16 "
    "--plots figures/"
)


def split_names(values: Sequence[str]) -> list[str]:
    """``["cam,hirescam", "layercam"]`` -> ``["cam", "hirescam", "layercam"]``."""
    return [v for value in values for v in value.split(",") if v]


def parse_samples(text: str, total: int, splits: dict[str, list[int]] | None = None) -> np.ndarray:
    """Sorted sample indices from ``START:STOP``, ``N`` (the first N), ``i,j,k``, ``all``, or
    ``train``/``val``/``test`` (the split recorded in the checkpoint)."""
    splits = splits or {}
    try:
        if text == "all":
            ids = np.arange(total)
        elif text in ("train", "val", "test"):
            if text not in splits:
                raise InputError(f"--samples {text}: the checkpoint records no {text} split")
            ids = np.asarray(sorted(splits[text]), dtype=np.int64)
        elif ":" in text:
            lo, hi = text.split(":", 1)
            ids = np.arange(int(lo) if lo else 0, int(hi) if hi else total)
        elif "," in text:
            ids = np.unique(np.asarray([int(i) for i in text.split(",") if i], dtype=np.int64))
        else:
            ids = np.arange(int(text))
    except ValueError:
        raise InputError(
            f"--samples {text!r}: expected START:STOP, N, i,j,k, all, train, val or test"
        ) from None
    if ids.size == 0 or ids.min() < 0 or ids.max() >= total:
        raise InputError(f"--samples {text!r}: selects no valid samples of a campaign of {total}")
    return ids


def explain_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="surrogate explain",
        description="Attribution maps of a trained surrogate for the designs of a campaign, "
        "written to one netCDF file (streamed, so memory stays bounded).",
        epilog=EXAMPLE,
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="a 'surrogate fit' .ckpt")
    parser.add_argument("--data", type=Path, help="campaign file (netCDF4/HDF5)")
    parser.add_argument("--out", type=Path, help="output netCDF file")
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["cam", "hirescam", "layercam"],
        help=f"any of {', '.join(METHODS)}, or polycam for its three variants "
        "(space- or comma-separated; default: cam hirescam layercam)",
    )
    parser.add_argument("--layer", help="module to explain (default: the last spatial layer)")
    parser.add_argument(
        "--interpolation",
        default="none,bilinear",
        help=f"comma-separated, from {', '.join(MODES)} (default: none,bilinear)",
    )
    parser.add_argument(
        "--samples",
        default="all",
        help="START:STOP, N (the first N), i,j,k, all, or train/val/test (the checkpoint's split)",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="designs per pass")
    parser.add_argument("--relu", action="store_true", help="keep only positive attributions")
    parser.add_argument(
        "--normalise", action="store_true", help="scale each map to a largest magnitude of 1"
    )
    parser.add_argument("--plots", type=Path, help="folder for per-design figures (PNG and PDF)")
    parser.add_argument("--plot-samples", type=int, default=4, help="designs to plot (default 4)")
    parser.add_argument("--device", default="auto", help="auto (GPU when present), cpu or cuda")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument(
        "--list-layers", action="store_true", help="list candidate layers and their resolution"
    )
    return parser


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {name}: no CUDA device is available")
    if name != "cpu" and not name.startswith("cuda"):
        raise InputError(f"--device {name!r}: expected auto, cpu or cuda[:N]")
    return name


def list_layers(model, shape: tuple[int, int]) -> None:
    from explain.api import candidate_layers, default_layer, pyramid_layers

    default, pyramid = default_layer(model, shape), pyramid_layers(model, shape)
    print(f"candidate layers for a {shape[0]}x{shape[1]} input (name, channels, map size):")
    for info in candidate_layers(model, shape):
        notes = [
            n
            for n, on in (("default", info.name == default), ("poly-cam", info.name in pyramid))
            if on
        ]
        tag = f"  [{', '.join(notes)}]" if notes else ""
        print(f"  {info.name:<34} {info.channels:>5}  {info.height}x{info.width}{tag}")


def explain_command(args: Sequence[str]) -> int:
    """Run ``surrogate explain``; returns the exit status."""
    opts = explain_parser().parse_args(args)
    from data.campaign import open_campaign
    from surrogate.checkpoint import model_from_checkpoint, read_checkpoint

    ckpt = read_checkpoint(opts.checkpoint)
    model = model_from_checkpoint(ckpt, opts.checkpoint)
    splits = {
        key.removeprefix("split_"): value
        for key, value in ckpt.get("CampaignDataModule", {}).items()
        if key.startswith("split_")
    }
    del ckpt
    grid = tuple(int(n) for n in getattr(model, "grid_shape", (0, 0)))
    if opts.list_layers:
        list_layers(model, grid)
        return 0
    if opts.data is None or opts.out is None:
        raise InputError("--data and --out are required (unless --list-layers)")
    if opts.out.suffix != ".nc":
        raise InputError(f"{opts.out}: --out must be a .nc file")
    if opts.out.exists() and not opts.overwrite:
        raise InputError(f"{opts.out}: output file already exists; pass --overwrite to replace it")
    campaign = open_campaign(opts.data)
    try:
        return _run(opts, model, grid, campaign, splits)
    finally:
        campaign.close()


def _run(opts: argparse.Namespace, model, grid: tuple[int, int], campaign, splits) -> int:
    from data.campaign import software_version
    from explain.api import Explainer
    from explain.io import write_batches

    shape = (campaign.sizes["y"], campaign.sizes["x"])
    if grid != (0, 0) and shape != grid:
        raise InputError(
            f"{opts.data}: roughness grid is {shape[0]}x{shape[1]} but checkpoint "
            f"{opts.checkpoint} was trained on {grid[0]}x{grid[1]}"
        )
    if opts.batch_size < 1 or opts.plot_samples < 0:
        raise InputError("--batch-size must be >= 1 and --plot-samples >= 0")
    selected = parse_samples(opts.samples, campaign.sizes["sample"], splits)
    explainer = Explainer(
        model,
        shape,
        methods=split_names(opts.methods),
        layer=opts.layer,
        interpolation=split_names([opts.interpolation]),
        relu=opts.relu,
        normalise=opts.normalise,
        device=resolve_device(opts.device),
    )
    roughness = campaign["roughness"].variable  # lazy: read batch by batch
    simulated = campaign["max_vorticity"].variable

    def batches():
        start_time = time.perf_counter()
        for ds in explainer.batches(_Slice(roughness, selected), opts.batch_size, progress=True):
            ids = selected[ds["sample"].values]
            ds = ds.assign_coords(sample=ids)
            ds["simulated"] = ("sample", simulated[ids].values)
            ds["simulated"].attrs.update(units="U_e/delta", long_name="simulated max vorticity")
            explainer.check_cam()
            yield ds
        batches.seconds = time.perf_counter() - start_time

    def provenance() -> dict[str, str | float]:
        return {
            **explainer.attrs(),
            "checkpoint": str(opts.checkpoint),
            "checkpoint_sha256": sha256(opts.checkpoint),
            "campaign": str(opts.data),
            "software": f"roughness-surrogate {software_version()}",
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    write_batches(opts.out, batches(), len(selected), opts.overwrite, provenance)
    print(f"maps of {len(selected)} designs -> {opts.out} ({batches.seconds:.1f} s)")
    if "cam" in explainer.methods:
        print(
            f"CAM check: |prediction - bias - sum(map)| <= {explainer.cam_residual:.2e} U_e/delta "
            f"(relative {explainer.cam_relative_residual:.1e})"
        )
    if opts.plots is not None and opts.plot_samples:
        written = plot_designs(opts.out, campaign, opts.plots, opts.plot_samples)
        print(f"plots: {len(written)} files in {opts.plots}")
    return 0


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


def plot_designs(maps_path: Path, campaign, folder: Path, count: int) -> list[Path]:
    """Figures of the first ``count`` designs of a ``surrogate explain`` output."""
    import xarray as xr

    from explain.plots import attribution_figure

    written: list[Path] = []
    folder.mkdir(parents=True, exist_ok=True)
    with xr.open_dataset(maps_path, engine="h5netcdf") as maps:
        for sample in maps["sample"].values[:count]:
            one = maps.sel(sample=sample).load()
            design = campaign.isel(sample=int(sample))
            contribution = design["contribution"].values if "contribution" in design else None
            written += attribution_figure(
                one,
                design["roughness"].values,
                folder / f"design-{int(sample):05d}",
                ys=campaign["y"].values if "y" in campaign.coords else None,
                xs=campaign["x"].values if "x" in campaign.coords else None,
                contribution=contribution,
                simulated=float(design["max_vorticity"]),
                title=f"design {int(sample)}",
            )
    return written
