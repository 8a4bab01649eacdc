"""Campaign files: the netCDF4 schema, writers (in memory, streamed, atomic) and validation.

A campaign is a netCDF4 file (HDF5 underneath, written through h5netcdf, so plain h5py
reads it) with dimensions ``sample``, ``y`` (spanwise) and ``x`` (streamwise, flow towards
+x). Lengths are in units of the boundary-layer thickness delta and vorticity in U_e/delta.
``docs/campaign-format.md`` describes the schema for users converting their own data.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5netcdf
import h5py
import numpy as np
import xarray as xr
from tqdm import tqdm

from data.atomic import HDF5_OVERHEAD, atomic_path, check_outputs, check_space
from data.errors import CampaignError
from data.physics import PhysicsParams
from data.simulator import SimulationChunk, simulate_chunks

Spec = tuple[tuple[str, ...], np.dtype]

REQUIRED: dict[str, Spec] = {
    "roughness": (("sample", "y", "x"), np.dtype(np.float32)),
    "max_vorticity": (("sample",), np.dtype(np.float32)),
}
GROUND_TRUTH_SCHEMA: dict[str, Spec] = {
    "contribution": (("sample", "y", "x"), np.dtype(np.float32)),
    "peak_y": (("sample",), np.dtype(np.int32)),
    "peak_x": (("sample",), np.dtype(np.int32)),
    "peak_sign": (("sample",), np.dtype(np.int8)),
    "peak_margin": (("sample",), np.dtype(np.float32)),
}
GROUND_TRUTH: tuple[str, ...] = tuple(GROUND_TRUTH_SCHEMA)
SCHEMA: dict[str, Spec] = {**REQUIRED, **GROUND_TRUTH_SCHEMA}
FINITE: tuple[str, ...] = ("roughness", "max_vorticity", "contribution")
MIN_GRID = 4  # smallest accepted y and x size, in cells
GENERATOR = "reduced-order roughness model"
CONVENTIONS = "CF-1.8"

# (units, long_name) of every variable and coordinate we write
ATTRIBUTES: dict[str, tuple[str, str]] = {
    "sample": ("1", "sample id"),
    "y": ("delta", "spanwise position of the cell centre"),
    "x": ("delta", "streamwise position of the cell centre (flow towards +x)"),
    "roughness": ("delta", "roughness height"),
    "max_vorticity": ("U_e/delta", "saturated maximum wall-normal vorticity magnitude in the wake"),
    "contribution": ("U_e/delta", "exact per-cell contribution to max_vorticity"),
    "peak_y": ("1", "spanwise cell index of the wake vorticity peak"),
    "peak_x": (
        "1",
        "streamwise cell index of the wake vorticity peak in the extended grid "
        "(patch plus wake, 0 .. size + wake - 1; always >= size)",
    ),
    "peak_sign": ("1", "sign of the vorticity at the peak (+1 or -1)"),
    "peak_margin": ("1", "relative gap between the peak and the best rival peak"),
}

_BLOCK_VALUES = 1 << 22  # values read at once while checking for NaN/Inf (16 MiB of float32)
_WRITE_CHUNK_SAMPLES = 64  # HDF5 chunk length along `sample` for the streamed writer


def fingerprint(max_vorticity: np.ndarray, grid: tuple[int, ...]) -> str:
    """A short identity of a campaign, to tie a checkpoint's split indices to the campaign they
    were drawn from: sha256 of the targets (float32) and the roughness grid. Cheap to compute
    (one value per design), and two campaigns with the same targets in the same order are, for
    a split, the same campaign."""
    digest = hashlib.sha256(np.ascontiguousarray(max_vorticity, dtype="<f4").tobytes())
    digest.update(repr(tuple(int(n) for n in grid)).encode())
    return digest.hexdigest()[:16]


def file_fingerprint(path: str | os.PathLike[str]) -> str:
    """:func:`fingerprint` of a campaign file, read with plain h5py."""
    with h5py.File(path, "r") as f:
        return fingerprint(f["max_vorticity"][...], f["roughness"].shape[1:])


def check_split_campaign(expected: str | None, path: str | Path, source: str) -> None:
    """Refuse to apply a split recorded for one campaign to another (``expected``: the
    fingerprint stored with the split; ``None`` for checkpoints that predate it)."""
    if expected is not None and expected != file_fingerprint(path):
        raise CampaignError(
            f"{path}: not the campaign {source}'s split was drawn from (its targets differ), so "
            "its train/val/test indices would pick other designs; use the training campaign, "
            "or select designs by index"
        )


SAMPLE_ID_ATTRS = {"units": "1", "long_name": "the design's own id in the campaign (its 'sample')"}
POSITION_ATTRS = {"units": "1", "long_name": "position of the design in the campaign (0-based)"}


def sample_ids(ds: xr.Dataset, positions: np.ndarray) -> np.ndarray:
    """The campaign's own ids (its ``sample`` coordinate) of the designs at ``positions``;
    the positions themselves where the campaign has no such coordinate. Every output carries
    both: ``sample`` (the position, which selects the design) and ``sample_id``."""
    positions = np.asarray(positions, dtype=np.int64)
    if "sample" not in ds.coords:
        return positions
    return np.asarray(ds["sample"].values)[positions]


def software_version() -> str:
    """Installed version of ``roughness-surrogate``, or ``"unknown"`` outside an install."""
    try:
        return importlib.metadata.version("roughness-surrogate")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _resolve_params(size: int, params: PhysicsParams | None) -> PhysicsParams:
    if params is None:
        return PhysicsParams.for_size(size)
    if params.size != size:
        raise ValueError(
            f"params.size={params.size} disagrees with size={size}; pass size={params.size}"
        )
    return params


def _check_counts(samples: int, chunk_size: int) -> None:
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")


def _coords(samples: int, params: PhysicsParams) -> dict[str, np.ndarray]:
    """Sample ids ``(sample,)`` int64 and cell-centre positions ``(y,)``, ``(x,)`` in delta."""
    centres = (np.arange(params.size, dtype=np.float64) + 0.5) * params.cell_size
    return {"sample": np.arange(samples, dtype=np.int64), "y": centres, "x": centres.copy()}


def _global_attrs(params: PhysicsParams, seed: int) -> dict[str, float | int | str]:
    """Provenance attributes of a synthetic campaign: generator, model parameters, seed."""
    return {
        "Conventions": CONVENTIONS,
        "title": "synthetic roughness campaign",
        "generator": GENERATOR,
        "seed": int(seed),
        "software_version": software_version(),
        **params.as_attrs(),
    }


def _variables(chunk: SimulationChunk) -> dict[str, np.ndarray]:
    """Cast a simulated chunk to the schema dtypes; same arrays for every writer."""
    return {name: np.asarray(getattr(chunk, name)).astype(SCHEMA[name][1]) for name in SCHEMA}


def _chunks(
    params: PhysicsParams, samples: int, seed: int, chunk_size: int, progress: bool
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Simulated blocks as ``(start, arrays)`` with a tqdm bar when ``progress``."""
    with tqdm(total=samples, desc="simulating", unit="sample", disable=not progress) as bar:
        for start, chunk in simulate_chunks(params, samples, seed, chunk_size):
            arrays = _variables(chunk)
            yield start, arrays
            bar.update(len(arrays["max_vorticity"]))


def simulate_campaign(
    samples: int,
    size: int = 64,
    seed: int = 0,
    params: PhysicsParams | None = None,
    chunk_size: int = 500,
    progress: bool = False,
) -> xr.Dataset:
    """Simulate a synthetic campaign in memory.

    Args:
        samples: Number of roughness patches.
        size: Patch size N in cells (the grid is N x N).
        seed: Campaign seed; sample ``i`` depends only on ``(seed, i)``.
        params: Model parameters; default ``PhysicsParams.for_size(size)``. Its ``size``
            must equal ``size``.
        chunk_size: Samples simulated at once (does not change the result).
        progress: Show a tqdm progress bar.

    Returns:
        Dataset with ``roughness (sample, y, x)`` in delta, ``max_vorticity (sample,)`` in
        U_e/delta and the ground-truth variables of :data:`GROUND_TRUTH`.
    """
    params = _resolve_params(size, params)
    _check_counts(samples, chunk_size)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SCHEMA}
    for _, arrays in _chunks(params, samples, seed, chunk_size, progress):
        for name, array in arrays.items():
            parts[name].append(array)
    data = {name: (SCHEMA[name][0], np.concatenate(parts[name])) for name in SCHEMA}
    ds = xr.Dataset(data, coords=_coords(samples, params), attrs=_global_attrs(params, seed))
    for name, (units, long_name) in ATTRIBUTES.items():
        ds[name].attrs.update(units=units, long_name=long_name)
    return ds


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


@contextmanager
def _atomic_output(path: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary name next to ``path``; rename into place on success, else delete."""
    check_outputs([path], overwrite, error=CampaignError)
    with atomic_path(path) as tmp:
        yield tmp


def _create_layout(
    f: h5netcdf.File, samples: int, params: PhysicsParams, seed: int
) -> dict[str, h5netcdf.Variable]:
    """Dimensions, coordinates, empty schema variables and attributes of a streamed file."""
    n = params.size
    f.dimensions = {"sample": samples, "y": n, "x": n}
    for name, values in _coords(samples, params).items():
        f.create_variable(name, (name,), data=values)
    rows = min(samples, _WRITE_CHUNK_SAMPLES)
    variables = {}
    for name, (dims, dtype) in SCHEMA.items():
        chunks = (rows, n, n) if len(dims) == 3 else (samples,)
        variables[name] = f.create_variable(name, dims, dtype, chunks=chunks)
    for name, (units, long_name) in ATTRIBUTES.items():
        f.variables[name].attrs.update({"units": units, "long_name": long_name})
    f.attrs.update(_global_attrs(params, seed))
    return variables


def simulate_to_file(
    path: str | os.PathLike[str],
    samples: int,
    size: int = 64,
    seed: int = 0,
    params: PhysicsParams | None = None,
    chunk_size: int = 500,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Simulate a campaign straight into a netCDF4 file, one chunk at a time.

    Memory is bounded by ``chunk_size``, not by ``samples``. The file is written to
    ``.NAME.tmp-<pid>`` in the same folder and renamed into place at the end; on any
    error the temporary file is removed. The result equals :func:`simulate_campaign`
    with the same arguments, bit for bit.

    Args:
        path: Output file.
        samples: Number of roughness patches.
        size: Patch size N in cells.
        seed: Campaign seed.
        params: Model parameters; default ``PhysicsParams.for_size(size)``.
        chunk_size: Samples simulated and written at once.
        overwrite: Replace an existing file.
        progress: Show a tqdm progress bar.

    Returns:
        The output path.

    Raises:
        CampaignError: ``path`` exists and ``overwrite`` is false, or its folder is missing.
    """
    path = Path(path)
    params = _resolve_params(size, params)
    _check_counts(samples, chunk_size)
    check_outputs([path], overwrite, error=CampaignError)
    # the two per-cell float32 fields (roughness, contribution) dominate the file
    what = f"a campaign of {samples} samples of {params.size}x{params.size}"
    check_space(path, 2 * 4 * samples * params.size**2, what)
    with _atomic_output(path, overwrite) as tmp, h5netcdf.File(tmp, "w") as f:
        variables = _create_layout(f, samples, params, seed)
        for start, arrays in _chunks(params, samples, seed, chunk_size, progress):
            for name, array in arrays.items():
                variables[name][start : start + len(array)] = array
    return path


# encoding keys that describe how a file stored a variable, not the variable
STORAGE_LAYOUT = frozenset(
    {"chunksizes", "preferred_chunks", "contiguous", "original_shape", "source", "unlimited_dims"}
)


def write_campaign(ds: xr.Dataset, path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Write a campaign Dataset atomically with ``to_netcdf(engine="h5netcdf")``.

    Float variables without an explicit ``_FillValue`` are written without one, so plain
    h5py readers see the raw values. The Dataset is not validated; open the result with
    :func:`open_campaign` to check it.

    Raises:
        CampaignError: ``path`` exists and ``overwrite`` is false, or its folder is missing.
    """
    path = Path(path)
    encoding = {}
    for name, var in ds.variables.items():
        # a Dataset read from a file carries that file's storage layout (chunks sized for its
        # sample count, xarray's read-only "preferred_chunks"): a subset or a reordering
        # cannot be written with it, so only what describes the values is kept
        kept = {k: v for k, v in var.encoding.items() if k not in STORAGE_LAYOUT}
        if var.dtype.kind == "f" and "_FillValue" not in kept:
            kept["_FillValue"] = None
        encoding[name] = kept
    check_outputs([path], overwrite, error=CampaignError)
    what = f"a campaign of {ds.sizes.get('sample', 0)} samples"
    check_space(path, int(ds.nbytes * 1.25) + HDF5_OVERHEAD, what)
    with _atomic_output(path, overwrite) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf", encoding=encoding)
    return path


def _raw_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Stored HDF5 shapes of the schema variables; the file-level checks happen here."""
    if not path.exists():
        raise CampaignError(f"{path}: campaign file not found")
    try:
        with h5py.File(path, "r") as f:
            return {
                name: tuple(f[name].shape)
                for name in SCHEMA
                if name in f and isinstance(f[name], h5py.Dataset)
            }
    except OSError as exc:
        truncated = "truncated" in str(exc)
        what = "is truncated or damaged" if truncated else "is not an HDF5/netCDF4 file"
        raise CampaignError(
            f"{path}: file {what} ({_one_line(exc)}); expected a netCDF4 campaign file"
        ) from exc


def _check_variable(ds: xr.Dataset, label: str, name: str, raw: tuple[int, ...] | None) -> None:
    """Dims, dtype and stored shape of one schema variable present in ``ds``."""
    dims, dtype = SCHEMA[name]
    var = ds[name]
    if var.dims != dims:
        raise CampaignError(f"{label}: variable '{name}' has dims {var.dims}; expected {dims}")
    if var.dtype != dtype:
        raise CampaignError(f"{label}: variable '{name}' has dtype {var.dtype}; expected {dtype}")
    # h5netcdf pads a variable stored shorter than its dimension with fill values
    for dim, stored, size in zip(dims, raw or var.shape, var.shape, strict=False):
        if stored != size:
            raise CampaignError(
                f"{label}: variable '{name}' holds {stored} values along '{dim}' but "
                f"'{dim}' has size {size}; expected matching lengths"
            )


def _check_sizes(ds: xr.Dataset, label: str) -> None:
    """At least one sample and at least ``MIN_GRID`` cells along y and x."""
    if ds.sizes["sample"] < 1:
        raise CampaignError(f"{label}: variable 'roughness' has 0 samples; expected at least 1")
    for dim in ("y", "x"):
        if ds.sizes[dim] < MIN_GRID:
            raise CampaignError(
                f"{label}: variable 'roughness' has {ds.sizes[dim]} cells along '{dim}'; "
                f"expected at least {MIN_GRID}"
            )


def _check_coordinates(ds: xr.Dataset, label: str) -> None:
    """``y`` and ``x``, where present: finite, strictly increasing cell centres with one
    spacing (the schema's grid of equal cells); ``sample``: unique ids."""
    for dim in ("y", "x"):
        if dim not in ds.coords:
            continue
        values = np.asarray(ds[dim].values, dtype=np.float64)
        if values.ndim != 1 or not np.isfinite(values).all():
            raise CampaignError(
                f"{label}: coordinate '{dim}' has NaN or Inf values; expected finite cell "
                "centres in delta"
            )
        steps = np.diff(values)
        if steps.size and not (steps > 0).all():
            raise CampaignError(
                f"{label}: coordinate '{dim}' is not strictly increasing (first break after index "
                f"{int(np.argmax(steps <= 0))}); expected cell centres in increasing order"
            )
        if steps.size and np.ptp(steps) > 1e-6 * abs(float(steps.mean())):
            raise CampaignError(
                f"{label}: coordinate '{dim}' is not uniformly spaced (spacing {steps.min():.6g} "
                f"to {steps.max():.6g} delta); expected equal cells"
            )
    if "sample" in ds.coords and ds.sizes["sample"] > 1:
        ids = np.asarray(ds["sample"].values)
        if np.unique(ids).size != ids.size:
            raise CampaignError(f"{label}: coordinate 'sample' repeats ids; expected unique ids")


def _check_finite(ds: xr.Dataset, label: str, name: str, samples: np.ndarray | None = None) -> None:
    """Read ``name`` in sample blocks (bounded memory) and reject NaN or Inf; ``samples``:
    only those sample indices (a command that reads a few designs checks only them)."""
    var = ds[name]
    ids = np.arange(var.sizes["sample"]) if samples is None else np.asarray(samples)
    step = max(1, _BLOCK_VALUES // max(1, int(np.prod(var.shape[1:]))))
    for start in range(0, len(ids), step):
        chunk = ids[start : start + step]
        contiguous = chunk[-1] - chunk[0] + 1 == len(chunk)
        where = slice(int(chunk[0]), int(chunk[-1]) + 1) if contiguous else chunk
        try:
            block = var.isel(sample=where).values
        except (OSError, ValueError, RuntimeError) as exc:
            raise CampaignError(
                f"{label}: variable '{name}' cannot be read ({_one_line(exc)}); "
                "expected a readable netCDF4 variable"
            ) from exc
        finite = np.isfinite(block).reshape(len(block), -1).all(axis=1)
        if not finite.all():
            bad = int(chunk[int(np.argmin(finite))])
            raise CampaignError(
                f"{label}: variable '{name}' has NaN or Inf values (first at sample index {bad}); "
                "expected finite values"
            )


def validate_campaign(
    ds: xr.Dataset,
    label: str,
    raw_shapes: dict[str, tuple[int, ...]] | None = None,
    check_values: bool = True,
) -> None:
    """Check ``ds`` against the schema; ``label`` (usually the file name) starts each message.

    Args:
        ds: Campaign Dataset, lazy or loaded.
        label: Prefix of the error messages, e.g. the file path.
        raw_shapes: Stored shapes per variable, to catch lengths that the reader padded.
        check_values: Read every value to reject NaN/Inf; ``False`` leaves the per-cell
            fields to :func:`check_samples`, for a command that reads only some designs.

    Raises:
        CampaignError: One-line message naming ``label``, the variable and the expectation.
    """
    raw_shapes = raw_shapes or {}
    for name, (dims, dtype) in REQUIRED.items():
        if name not in ds.variables:
            raise CampaignError(
                f"{label}: variable '{name}' is missing; expected {dtype} with dims {dims}"
            )
    for name in SCHEMA:
        if name in ds.variables:
            _check_variable(ds, label, name, raw_shapes.get(name))
    _check_sizes(ds, label)
    _check_coordinates(ds, label)
    for name in FINITE:  # per-design scalars are always read: one value per design
        if name in ds.variables and (check_values or ds[name].ndim == 1):
            _check_finite(ds, label, name)


def check_samples(ds: xr.Dataset, samples: np.ndarray, label: str | None = None) -> None:
    """Reject NaN/Inf in the designs ``samples`` of a campaign opened with
    ``open_campaign(..., check_values=False)``: only those designs are read."""
    label = label or ds.encoding.get("source", "campaign")
    for name in FINITE:
        if name in ds.variables:
            _check_finite(ds, label, name, np.sort(np.asarray(samples)))


def open_campaign(path: str | os.PathLike[str], check_values: bool = True) -> xr.Dataset:
    """Open a campaign lazily (engine h5netcdf) and validate it against the schema.

    Finiteness is checked by reading the data in sample blocks, so memory stays bounded;
    the returned Dataset is still lazy. ``ds.encoding["source"]`` holds the path. With
    ``check_values=False`` no design is read (the structure, sizes and coordinates are still
    checked); call :func:`check_samples` on the designs that will be used.

    Raises:
        CampaignError: The file is missing, unreadable, truncated, or breaks the schema:
            missing variable, wrong dims or dtype, mismatched lengths, no samples, a grid
            smaller than 4 cells, coordinates that are not finite, increasing and equally
            spaced, repeated sample ids, or NaN/Inf values. The message is one line.
    """
    path = Path(path)
    raw_shapes = _raw_shapes(path)
    try:
        ds = xr.open_dataset(path, engine="h5netcdf", phony_dims="sort")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CampaignError(
            f"{path}: cannot be opened as a netCDF4 campaign ({_one_line(exc)}); "
            "expected variables 'roughness' and 'max_vorticity' sharing dimension 'sample'"
        ) from exc
    try:
        validate_campaign(ds, str(path), raw_shapes, check_values)
    except BaseException:
        ds.close()
        raise
    ds.encoding["source"] = str(path)
    return ds


def open_or_simulate(path: str | os.PathLike[str], samples: int, size: int, seed: int) -> Path:
    """Return ``path``, simulating the campaign there first if the file is absent.

    Parent folders are created. An existing file is returned as is, not validated and not
    compared with ``samples``, ``size`` or ``seed``.
    """
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        simulate_to_file(path, samples, size=size, seed=seed)
    return path
