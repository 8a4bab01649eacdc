"""A synthetic campaign written as one HDF5 file per run, the way a DNS campaign leaves its runs.

``surrogate ingest`` reads such files through a YAML mapping; these writers let it be tested
without a DNS. Every layout ships its mapping in ``configs/ingest/<layout>.yaml`` (for the
default 64x64 grid) and :func:`write_runs` also writes ``mapping.yaml`` beside the runs, with
the grid of the campaign it wrote. The designs and targets are those of
:func:`data.campaign.simulate_campaign` with the same ``size`` and ``seed`` (sample ``i``
depends only on ``(seed, i)``), so an ingest can be checked against the in-memory campaign.

Layouts (file ``run-{index:06d}.h5``, root attribute ``run_id = "run-{seed}-{index:06d}"``):

``same-grid``
    ``/surface/height`` ``(y, x)`` float32 in delta on the campaign grid (uniform spacing
    ``cell_size``), ``/results/max_vorticity`` scalar float32 in U_e/delta. Bit-identical to
    the campaign.
``fine-metres``
    ``/surface/height`` ``(x, y)`` (transposed) float64 in metres on a 2x finer grid, with
    cell-centre coordinates ``/surface/x`` and ``/surface/y`` in metres and delta as the root
    attribute ``delta_m`` (:data:`DELTA_M`). Each coarse cell holds its campaign height ``c``
    times ``1 + a p`` with the zero-mean checkerboard ``p = [[+1, -1], [-1, +1]]`` and
    ``a = 1/8`` (:data:`CHECKER`), so the field is genuinely finer, yet its 2x2 block mean in
    delta is ``c`` exactly in float64 (every partial sum is a multiple of ``c / 8``); after the
    metres round trip it is ``c`` to about 1e-17 delta. Scalar target as in ``same-grid``.
``field``
    heights as in ``same-grid`` and no scalar: ``/flow/vorticity`` ``(y, N + wake)`` float32,
    the saturated field ``omega_s tanh(w / omega_s)`` over the patch and its wake; its largest
    magnitude over the wake (x from ``N cell_size`` to ``(N + wake) cell_size`` delta from the
    patch's first cell edge) is the campaign's target.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import yaml
from tqdm import tqdm

from data.atomic import atomic_path, check_folder, check_space
from data.campaign import GENERATOR, SCHEMA, software_version
from data.errors import InputError
from data.physics import PhysicsParams
from data.simulator import VorticityModel, simulate_chunks

LAYOUTS: tuple[str, ...] = ("same-grid", "fine-metres", "field")
DELTA_M = 0.01  # boundary-layer thickness of the fine-metres layout, in metres
FINE = 2  # refinement of the fine-metres grid: FINE x FINE fine cells per campaign cell
CHECKER = 0.125  # relative amplitude of the fine-metres checkerboard (a power of 2: exact means)
MAPPING_NAME = "mapping.yaml"
_FILE_OVERHEAD = 16 << 10  # HDF5 headers and attributes of one small run file, at most
_VORTICITY = ("U_e/delta", "saturated maximum wall-normal vorticity magnitude in the wake")


def run_name(index: int) -> str:
    """File name of run ``index``."""
    return f"run-{index:06d}.h5"


def run_id(seed: int, index: int) -> str:
    """The ``run_id`` root attribute of run ``index`` of the campaign with ``seed``."""
    return f"run-{seed}-{index:06d}"


def mapping_for(layout: str, params: PhysicsParams) -> dict:
    """The ingest mapping (the agreed YAML schema, as a dict) of ``layout``'s run files."""
    _check_layout(layout)
    n, cs = params.size, float(params.cell_size)
    scalar = {"scalar": "/results/max_vorticity"}
    height: dict = {"path": "/surface/height", "units": "delta", "spacing": {"x": cs, "y": cs}}
    target: dict = scalar
    if layout == "fine-metres":
        height = {
            "path": "/surface/height",
            "units": "m",
            "delta": {"attribute": "delta_m"},
            "axes": ["x", "y"],
            "coordinates": {"x": "/surface/x", "y": "/surface/y"},
        }
    elif layout == "field":
        probe = {"x": [n * cs, (n + params.wake) * cs], "y": [0.0, n * cs]}
        field = {"path": "/flow/vorticity", "axes": ["y", "x"], "spacing": {"x": cs, "y": cs}}
        target = {"field": {**field, "probe": probe, "reduction": "max_abs"}}
    return {
        "run_id": {"attribute": "run_id"},
        "height": height,
        "target": target,
        "grid": {"size": [n, n], "spacing": cs},
    }


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise InputError(f"layout {layout!r} unknown; expected one of {', '.join(LAYOUTS)}")


def _run_bytes(layout: str, params: PhysicsParams) -> int:
    """About how many bytes one run file of ``layout`` takes."""
    n = params.size
    if layout == "fine-metres":
        return 8 * (FINE * n) ** 2 + 2 * 8 * FINE * n + _FILE_OVERHEAD
    if layout == "field":
        return 4 * n * n + 4 * n * params.length_x + _FILE_OVERHEAD
    return 4 * n * n + _FILE_OVERHEAD


def _check_folder(folder: Path, overwrite: bool) -> None:
    """Refuse a folder that is a file, cannot be created, or holds files (unless ``overwrite``)."""
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: is a file; expected a folder for the run files")
    check_folder(folder, create=True, output=folder / run_name(0))
    if not overwrite and folder.is_dir() and any(folder.iterdir()):
        raise InputError(
            f"{folder}: output folder is not empty; pass --overwrite to replace its runs"
        )


def _attrs(params: PhysicsParams, seed: int, index: int, layout: str) -> dict:
    return {
        "run_id": run_id(seed, index),
        "sample": index,
        "seed": int(seed),
        "layout": layout,
        "generator": GENERATOR,
        "software_version": software_version(),
        **params.as_attrs(),
    }


def _dataset(group: h5py.Group, name: str, data: np.ndarray, units: str, long_name: str) -> None:
    group.create_dataset(name, data=data).attrs.update({"units": units, "long_name": long_name})


def fine_heights(coarse: np.ndarray) -> np.ndarray:
    """The fine-metres design of campaign heights ``coarse`` ``(y, x)`` in delta.

    Returns:
        float64 ``(FINE * y, FINE * x)`` in delta: ``c (1 + CHECKER p)`` on each 2x2 block, with
        the checkerboard ``p = [[+1, -1], [-1, +1]]``; the block means are ``coarse`` exactly.
    """
    block = np.kron(np.asarray(coarse, dtype=np.float64), np.ones((FINE, FINE)))
    parity = (np.arange(block.shape[0])[:, None] + np.arange(block.shape[1])[None, :]) % 2
    return block * np.where(parity == 0, 1.0 + CHECKER, 1.0 - CHECKER)


def _write_heights(f: h5py.File, heights: np.ndarray, layout: str, params: PhysicsParams) -> None:
    """``/surface/height`` (and its coordinates for fine-metres) of one run."""
    surface = f.create_group("surface")
    if layout != "fine-metres":
        _dataset(surface, "height", heights, "delta", "roughness height (y, x)")
        return
    fine = fine_heights(heights) * DELTA_M
    f.attrs["delta_m"] = DELTA_M
    _dataset(surface, "height", fine.T, "m", "roughness height (x, y), on a 2x finer grid")
    spacing = params.cell_size / FINE * DELTA_M
    centres = (np.arange(FINE * params.size, dtype=np.float64) + 0.5) * spacing
    _dataset(surface, "x", centres, "m", "streamwise cell centre (flow towards +x)")
    _dataset(surface, "y", centres.copy(), "m", "spanwise cell centre")


def _write_run(
    path: Path, layout: str, params: PhysicsParams, attrs: dict, heights: np.ndarray, target
) -> None:
    """One run file, atomically; ``target``: the scalar, or the saturated field for ``field``."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs.update(attrs)
        _write_heights(f, heights, layout, params)
        if layout == "field":
            flow = f.create_group("flow")
            long_name = "saturated wall-normal vorticity omega_s tanh(w / omega_s), patch + wake"
            _dataset(flow, "vorticity", target, _VORTICITY[0], long_name)
        else:
            _dataset(f.create_group("results"), "max_vorticity", target, *_VORTICITY)


def _runs(
    params: PhysicsParams, samples: int, seed: int, chunk_size: int, field: bool, progress: bool
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(index, heights float32 (y, x), target)`` per run; the target is the float32 scalar,
    or with ``field`` the saturated float32 field ``(y, N + wake)``."""
    model = VorticityModel(params) if field else None
    roughness_dtype, target_dtype = SCHEMA["roughness"][1], SCHEMA["max_vorticity"][1]
    with tqdm(total=samples, desc="simulating", unit="run", disable=not progress) as bar:
        for start, chunk in simulate_chunks(params, samples, seed, chunk_size):
            heights = np.asarray(chunk.roughness).astype(roughness_dtype)
            if model is None:
                targets = np.asarray(chunk.max_vorticity).astype(target_dtype)
            else:  # from the float64 heights the target itself was computed from
                w = model.field(chunk.roughness)
                targets = (params.omega_s * np.tanh(w / params.omega_s)).astype(target_dtype)
            for k in range(len(heights)):
                yield start + k, heights[k], targets[k]
                bar.update()


def write_mapping(folder: str | os.PathLike[str], layout: str, params: PhysicsParams) -> Path:
    """``folder/mapping.yaml``: the ingest mapping of ``layout``'s runs on ``params``'s grid."""
    path = Path(folder) / MAPPING_NAME
    header = (
        f"# ingest mapping of the {layout} run files in this folder (surrogate simulate "
        f"--per-run);\n# the same as configs/ingest/{layout}.yaml but for this campaign's grid\n"
    )
    text = yaml.safe_dump(mapping_for(layout, params), sort_keys=False, default_flow_style=None)
    with atomic_path(path) as tmp:
        tmp.write_text(header + text)
    return path


def _remove_stale_runs(folder: Path, written: list[Path]) -> None:
    """With overwrite: earlier run files beyond the new set would be ingested with it."""
    keep = {p.name for p in written}
    for old in folder.glob("run-*"):
        if old.name not in keep and old.suffix in (".h5", ".nc") and old.is_file():
            old.unlink()


def write_runs(
    folder: str | os.PathLike[str],
    samples: int,
    size: int = 64,
    seed: int = 0,
    layout: str = "same-grid",
    chunk_size: int = 500,
    overwrite: bool = False,
    progress: bool = True,
) -> list[Path]:
    """Simulate a campaign into ``folder`` as one file per run, chunk by chunk.

    Each run file is written to a temporary name and renamed into place; ``mapping.yaml`` is
    written last, so its presence says the set is complete. Memory is bounded by
    ``chunk_size``.

    Args:
        folder: Output folder (created); it must be empty unless ``overwrite``.
        samples: Number of runs.
        size: Patch size N in cells (the campaign grid is N x N).
        seed: Campaign seed; run ``i`` depends only on ``(seed, i)``.
        layout: One of :data:`LAYOUTS` (see the module docstring).
        chunk_size: Runs simulated at once (does not change the result).
        overwrite: Write into a non-empty folder, replacing its run files and mapping;
            run files of an earlier, larger set are removed.
        progress: Show a tqdm progress bar.

    Returns:
        The run files, in order.

    Raises:
        InputError: ``folder`` is a file or not empty (without ``overwrite``), or ``layout``
            is unknown.
    """
    folder = Path(folder)
    _check_layout(layout)
    if samples < 1 or chunk_size < 1:
        raise ValueError(f"samples and chunk_size must be at least 1, got {samples}, {chunk_size}")
    params = PhysicsParams.for_size(size)
    _check_folder(folder, overwrite)
    check_space(folder / run_name(0), samples * _run_bytes(layout, params), f"{samples} runs")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    runs = _runs(params, samples, seed, chunk_size, layout == "field", progress)
    for index, heights, target in runs:
        path = folder / run_name(index)
        _write_run(path, layout, params, _attrs(params, seed, index, layout), heights, target)
        written.append(path)
    if overwrite:
        _remove_stale_runs(folder, written)
    write_mapping(folder, layout, params)
    return written
