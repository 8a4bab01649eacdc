"""Stream per-batch Datasets into one netCDF4 file, so memory is bounded by the batch."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import h5netcdf
import h5py
import numpy as np
import xarray as xr

from data.atomic import atomic_path, check_outputs, check_space
from data.errors import InputError

_CHUNK_SAMPLES = 16  # HDF5 chunk length along `sample`
# grid dimension suffix -> the grid it indexes: the input's, and the native maps' coarser ones
_GRIDS = {
    "": "input grid",
    "_layer": "explained layer's grid",
    "_polycam": "finest Poly-CAM layer's grid",
}


def with_positions(
    ds: xr.Dataset, y: np.ndarray, x: np.ndarray, units: str = "delta"
) -> xr.Dataset:
    """``ds`` (a maps Dataset) with the cell-centre positions of every grid as coordinates.

    ``y`` ``(y,)`` and ``x`` ``(x,)`` are the input grid's cell centres in ``units`` (a
    campaign's ``y``/``x`` coordinates). A coarser grid (``y_layer``/``x_layer``,
    ``y_polycam``/``x_polycam``) whose cells each cover a block of input cells gets the mean
    of the block's centres, which on a uniform grid is the block's centre.
    """
    coords = {}
    for dim, fine, axis in (("y", y, "spanwise"), ("x", x, "streamwise")):
        fine = np.asarray(fine, dtype=np.float64)
        if ds.sizes.get(dim, len(fine)) != len(fine):
            raise InputError(f"{len(fine)} {dim} positions for a grid of {ds.sizes[dim]} cells")
        for suffix, grid in _GRIDS.items():
            n = ds.sizes.get(dim + suffix, 0)
            if n and len(fine) % n == 0:
                attrs = {"units": units, "long_name": f"{axis} cell centre of the {grid}"}
                coords[dim + suffix] = (dim + suffix, fine.reshape(n, -1).mean(axis=1), attrs)
    return ds.assign_coords(coords)


def _create(f: h5netcdf.File, name: str, var: xr.DataArray, dims: tuple[str, ...], n: int):
    values = var.values
    if values.dtype.kind in "UO":
        return f.create_variable(name, dims, dtype=h5py.string_dtype(), data=values.astype(object))
    if "sample" not in dims:
        return f.create_variable(name, dims, dtype=values.dtype, data=values)
    shape = [n if d == "sample" else var.sizes[d] for d in dims]
    chunks = tuple(
        min(_CHUNK_SAMPLES, n) if d == "sample" else s for d, s in zip(dims, shape, strict=True)
    )
    return f.create_variable(name, dims, dtype=values.dtype, chunks=chunks)


def write_batches(
    path: str | Path,
    batches: Iterable[xr.Dataset],
    samples: int,
    overwrite: bool = False,
    final_attrs: Callable[[], dict] | None = None,
) -> Path:
    """Write ``batches`` (consecutive along ``sample``, ``samples`` in all) to ``path``.

    The file appears under a temporary name and is renamed into place only when every
    batch is written; on any error nothing is left behind. Once the first batch is known,
    a file the free space (or the file-size limit) cannot take is refused. ``final_attrs``
    is called at the end, for attributes only known once all batches ran (e.g. a run-time
    residual).
    """
    path = Path(path)
    check_outputs([path], overwrite)
    with atomic_path(path) as tmp, h5netcdf.File(tmp, "w") as f:
        written = 0
        variables: dict[str, h5netcdf.Variable] = {}
        for ds in batches:
            if not variables:
                # the first batch sizes the file: refuse it now if the disk cannot take it
                per_sample = sum(
                    v.nbytes for v in {**ds.coords, **ds.data_vars}.values() if "sample" in v.dims
                ) / max(ds.sizes["sample"], 1)
                check_space(path, int(per_sample * samples), f"a maps file of {samples} designs")
                f.dimensions = {d: samples if d == "sample" else s for d, s in ds.sizes.items()}
                for name, var in {**ds.coords, **ds.data_vars}.items():
                    variables[name] = _create(f, str(name), var, var.dims, samples)
                    variables[name].attrs.update(var.attrs)
            stop = written + ds.sizes["sample"]
            for name, var in {**ds.coords, **ds.data_vars}.items():
                if "sample" in var.dims:
                    index = tuple(
                        slice(written, stop) if d == "sample" else slice(None) for d in var.dims
                    )
                    variables[name][index] = np.asarray(var.values)
            written = stop
            f.attrs.update(ds.attrs)
        if written != samples:
            raise InputError(f"{path}: wrote {written} samples, expected {samples}")
        if final_attrs is not None:
            f.attrs.update(final_attrs())
    return path
