"""Ingest of one per-run simulation file (HDF5 or netCDF4) onto the campaign grid.

A campaign leaves one file per run, laid out the way its solver wrote it. A YAML *mapping*
(``docs/ingest.md``) says where a run file keeps its roughness heights, their grid and
units, the boundary-layer thickness delta and the target. :func:`load_mapping` validates the
mapping once; :func:`read_run` reads one run with it and returns the heights in delta on the
campaign grid ``(y, x)`` and the target in U_e/delta, with the file's sha256.

A bad mapping is the user's input and stops an ingest (:class:`data.errors.InputError`); a
bad run is that run's problem (:class:`RunError`), which an ingest may record and skip.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import h5py
import numpy as np
import yaml
from scipy.interpolate import RegularGridInterpolator

from data.errors import InputError

UNITS: tuple[str, ...] = ("m", "mm", "delta")
REDUCTIONS: tuple[str, ...] = ("max_abs", "max", "min")
DEFAULT_SIZE, DEFAULT_SPACING = (64, 64), 0.25  # campaign grid: cells (y, x), spacing in delta
MIN_GRID = 4  # smallest campaign grid along y and x, as data.campaign.MIN_GRID
SAME_GRID_RTOL = 1e-9  # spacings this close are the same grid: heights are copied bit for bit
GRID_RTOL = 1e-6  # slack of the coverage, coarser-source and integer-refinement tests
UNIFORM_RTOL = 1e-3  # float32 coordinates of a 1000-cell grid deviate ~1e-4 from uniform
# values of a dataset's `units` attribute that name one of UNITS (others are not checked)
_UNIT_NAMES = {
    "m": {"m", "meter", "meters", "metre", "metres"},
    "mm": {"mm", "millimeter", "millimeters", "millimetre", "millimetres"},
    "delta": {"delta"},
}
_ORDER = ("y", "x")  # internal axis order, and the order of every (y, x) pair below


class RunError(Exception):
    """One run file that cannot be ingested: unreadable, or not what the mapping describes.

    Attributes:
        path: The run file.
        reason: One line saying what is wrong, naming the dataset or attribute involved.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class Ref:
    """A value in a run file: a root attribute (``kind="attribute"``) or a dataset path."""

    kind: str
    name: str


@dataclass(frozen=True, kw_only=True)
class Placement:
    """An array in a run file and its grid: ``axes`` in file order; ``coordinates`` (paths of
    1-D cell-centre datasets) or ``spacing`` (uniform), each a ``(y, x)`` pair in the height
    units."""

    path: str
    axes: tuple[str, str]
    coordinates: tuple[str, str] | None
    spacing: tuple[float, float] | None


@dataclass(frozen=True, kw_only=True)
class HeightSpec(Placement):
    """The roughness heights; ``delta`` in the height units (``None`` with units ``delta``)."""

    units: str
    delta: Ref | float | None


@dataclass(frozen=True, kw_only=True)
class FieldSpec(Placement):
    """A target field reduced over ``probe``: ``((y_lo, y_hi), (x_lo, x_hi))`` in delta."""

    probe: tuple[tuple[float, float], tuple[float, float]]
    reduction: str


@dataclass(frozen=True)
class GridSpec:
    """The campaign grid: ``size`` cells ``(y, x)`` of ``spacing`` delta."""

    size: tuple[int, int]
    spacing: float


@dataclass(frozen=True)
class Mapping:
    """A validated mapping; ``target`` is a scalar :class:`Ref` or a :class:`FieldSpec`."""

    source: str
    run_id: Ref | None
    height: HeightSpec
    target: Ref | FieldSpec
    grid: GridSpec
    normalised: str  # canonical JSON of everything but `source`, defaults filled in

    @property
    def digest(self) -> str:
        """sha256 of the normalised mapping: the same for mappings that read runs alike."""
        return hashlib.sha256(self.normalised.encode()).hexdigest()


@dataclass
class Run:
    """One ingested run.

    Attributes:
        run_id: The run's id (from the mapping's ``run_id``, else the file stem).
        heights: ``(y, x)`` float32 roughness heights in delta on the campaign grid.
        target: Maximum wake vorticity in U_e/delta.
        source: The run file, as given.
        sha256: sha256 of the file's bytes.
        interpolation_error: rms of (regridded heights interpolated back to the source
            grid - source heights) over rms of the source heights; 0.0 for the same grid.
    """

    run_id: str
    heights: np.ndarray
    target: float
    source: str
    sha256: str
    interpolation_error: float


# --- the mapping ---------------------------------------------------------------------------


class _Checker:
    """Validates the YAML tree of one mapping file; every message names the file and key."""

    def __init__(self, file: Path) -> None:
        self.file = file

    def fail(self, key: str, message: str) -> NoReturn:
        raise InputError(f"{self.file}: {key}: {message}")

    def wrong(self, key: str, value: Any, expected: str) -> NoReturn:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        self.fail(key, f"got {shown}; expected {expected}")

    def table(self, value: Any, key: str, required: tuple, optional: tuple = ()) -> dict:
        """``value`` as a dict with all of ``required`` and nothing outside ``optional``."""
        allowed = required + optional
        if not isinstance(value, dict):
            self.wrong(key or "mapping", value, f"a mapping with keys {', '.join(allowed)}")
        prefix = f"{key}." if key else ""
        for name in value:
            if name not in allowed:
                close = difflib.get_close_matches(str(name), allowed, n=1)
                hint = f"did you mean {prefix}{close[0]}?" if close else "expected one of"
                hint += "" if close else f" {', '.join(allowed)}"
                raise InputError(f"{self.file}: unknown key {prefix}{name}; {hint}")
        for name in required:
            if name not in value:
                raise InputError(f"{self.file}: missing required key {prefix}{name}")
        return value

    def text(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.wrong(key, value, "a non-empty string (an HDF5 path or name)")
        return value

    def number(self, value: Any, key: str, positive: bool = True) -> float:
        try:  # YAML 1.1 reads 1e-4 (no dot) as a string: accept numeric strings
            number = float(value) if not isinstance(value, bool) else float("nan")
        except (TypeError, ValueError):
            number = float("nan")
        if not np.isfinite(number) or (positive and number <= 0):
            self.wrong(key, value, "a positive number" if positive else "a number")
        return number

    def ref(self, value: Any, key: str) -> Ref:
        entry = self.table(value, key, (), ("attribute", "dataset"))
        if len(entry) != 1:
            self.wrong(key, value, "{attribute: NAME} or {dataset: PATH}")
        kind, name = next(iter(entry.items()))
        return Ref(kind, self.text(name, f"{key}.{kind}"))

    def pair(self, value: Any, key: str, item) -> tuple:
        """A ``{x: .., y: ..}`` entry as a ``(y, x)`` tuple of ``item(value, key)``."""
        entry = self.table(value, key, ("x", "y"))
        return tuple(item(entry[axis], f"{key}.{axis}") for axis in _ORDER)

    def axes(self, value: Any, key: str) -> tuple[str, str]:
        if not isinstance(value, list) or sorted(map(str, value)) != ["x", "y"]:
            self.wrong(key, value, "[y, x] or [x, y]")
        return (str(value[0]), str(value[1]))


def _placement(check: _Checker, entry: dict, key: str) -> dict:
    """The fields heights and field share: path, axes, and coordinates or spacing."""
    given = [name for name in ("coordinates", "spacing") if name in entry]
    if len(given) != 1:
        check.fail(key, f"give exactly one of coordinates, spacing ({len(given)} given)")
    coordinates, spacing = entry.get("coordinates"), entry.get("spacing")
    if spacing is not None and not isinstance(spacing, dict):  # one number: both axes
        number = check.number(spacing, f"{key}.spacing")
        spacing = {"x": number, "y": number}
    return {
        "path": check.text(entry["path"], f"{key}.path"),
        "axes": check.axes(entry.get("axes", ["y", "x"]), f"{key}.axes"),
        "coordinates": None
        if coordinates is None
        else check.pair(coordinates, f"{key}.coordinates", check.text),
        "spacing": None if spacing is None else check.pair(spacing, f"{key}.spacing", check.number),
    }


def _height(check: _Checker, value: Any) -> HeightSpec:
    keys = ("units", "delta", "axes", "coordinates", "spacing")
    entry = check.table(value, "height", ("path",), keys)
    units = entry.get("units", "delta")
    if units not in UNITS:
        check.wrong("height.units", units, "m, mm or delta")
    delta = entry.get("delta")
    if units == "delta" and delta is not None:
        check.fail("height.delta", "not used with units delta (heights are already in delta)")
    if units != "delta" and delta is None:
        raise InputError(
            f"{check.file}: missing required key height.delta (needed with units {units}: "
            f"the boundary-layer thickness in {units})"
        )
    if isinstance(delta, dict):
        delta = check.ref(delta, "height.delta")
    elif delta is not None:
        delta = check.number(delta, "height.delta")
    return HeightSpec(**_placement(check, entry, "height"), units=units, delta=delta)


def _interval(check: _Checker, value: Any, key: str) -> tuple[float, float]:
    if not isinstance(value, list) or len(value) != 2:
        check.wrong(key, value, "[lo, hi] in delta")
    lo, hi = (check.number(v, key, positive=False) for v in value)
    if lo > hi:
        check.wrong(key, value, "lo <= hi")
    return (lo, hi)


def _target(check: _Checker, value: Any) -> Ref | FieldSpec:
    entry = check.table(value, "target", (), ("scalar", "field"))
    if len(entry) != 1:
        check.fail("target", f"give exactly one of scalar, field ({len(entry)} given)")
    if "scalar" in entry:
        scalar = entry["scalar"]
        if isinstance(scalar, str):
            return Ref("dataset", check.text(scalar, "target.scalar"))
        return check.ref(scalar, "target.scalar")
    keys = ("axes", "coordinates", "spacing", "reduction")
    field = check.table(entry["field"], "target.field", ("path", "probe"), keys)
    reduction = field.get("reduction", "max_abs")
    if reduction not in REDUCTIONS:
        check.wrong("target.field.reduction", reduction, ", ".join(REDUCTIONS))
    probe = check.pair(field["probe"], "target.field.probe", lambda v, k: _interval(check, v, k))
    return FieldSpec(**_placement(check, field, "target.field"), probe=probe, reduction=reduction)


def _grid(check: _Checker, value: Any) -> GridSpec:
    entry = check.table(value, "grid", (), ("size", "spacing"))
    size = entry.get("size", list(DEFAULT_SIZE))
    size = [size, size] if isinstance(size, int) and not isinstance(size, bool) else size
    ok = isinstance(size, list) and len(size) == 2
    if not ok or not all(isinstance(n, int) and not isinstance(n, bool) for n in size):
        check.wrong("grid.size", size, "[cells along y, cells along x]")
    if min(size) < MIN_GRID:
        check.wrong("grid.size", size, f"at least {MIN_GRID} cells along y and x")
    spacing = check.number(entry.get("spacing", DEFAULT_SPACING), "grid.spacing")
    return GridSpec((int(size[0]), int(size[1])), spacing)


def load_mapping(path: str | os.PathLike[str]) -> Mapping:
    """Read and validate an ingest mapping (YAML; schema in ``docs/ingest.md``).

    Raises:
        InputError: One line naming the file, the key (``height.units``) and what was
            expected; for an unknown key, the closest known one.
    """
    path = Path(path)
    try:
        tree = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: mapping file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read the mapping ({err})") from None
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise InputError(f"{path}: not valid YAML{line}") from None
    check = _Checker(path)
    entry = check.table(tree, "", ("height", "target"), ("run_id", "grid"))
    run_id = check.ref(entry["run_id"], "run_id") if "run_id" in entry else None
    height, target = _height(check, entry["height"]), _target(check, entry["target"])
    grid = _grid(check, entry.get("grid", {}))
    kind = "scalar" if isinstance(target, Ref) else "field"
    tree = {"run_id": run_id, "height": height, "target": {kind: target}, "grid": grid}
    normalised = json.dumps(tree, default=_plain, sort_keys=True, separators=(",", ":"))
    return Mapping(str(path), run_id, height, target, grid, normalised)


def _plain(value: Any) -> dict:
    """JSON form of the mapping's parts, in the YAML's own shape (``{x: .., y: ..}`` pairs)."""
    if isinstance(value, Ref):
        return {value.kind: value.name}
    plain = {k: getattr(value, k) for k in value.__dataclass_fields__}
    for key in ("coordinates", "spacing", "probe"):
        if isinstance(plain.get(key), tuple):
            plain[key] = dict(zip(_ORDER, plain[key], strict=True))
    return plain


# --- one run -------------------------------------------------------------------------------


def read_run(path: str | os.PathLike[str], mapping: Mapping) -> Run:
    """Read one run file with ``mapping`` onto the campaign grid.

    The heights are divided by delta (both in the height units) and put in ``(y, x)`` order;
    source cell centres come from the coordinates or from ``(i + 0.5) * spacing``, measured
    from the patch's first cell edge. A source on the campaign grid (spacings equal within
    1e-9) is copied bit for bit; an integer refinement is block-averaged; any other finer
    grid is interpolated linearly at the campaign cell centres. A larger patch is cropped to
    its first cells.

    Raises:
        RunError: The file is missing, unreadable or not HDF5; a dataset or attribute the
            mapping names is missing; values are NaN/Inf or of the wrong shape; the grid is
            not increasing, not uniform, coarser than the campaign grid or too small to cover
            it; or the probe region lies outside the target field.
    """
    sha256 = _file_sha256(path)
    if not h5py.is_hdf5(path):
        raise RunError(path, "not an HDF5/netCDF4 file")
    try:
        with h5py.File(path, "r") as f:
            reader = _Reader(f, path, mapping)
            heights, error = reader.heights()
            run_id, target = reader.run_id(), reader.target()
    except (OSError, RuntimeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise RunError(path, f"cannot read the file, truncated or damaged? ({first})") from None
    return Run(run_id, heights, target, os.fspath(path), sha256, error)


def _file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except FileNotFoundError:
        raise RunError(path, "file not found") from None
    except OSError as err:
        raise RunError(path, f"cannot read the file ({err.strerror or err})") from None
    return digest.hexdigest()


class _Reader:
    """Reads the parts of one open run file that ``mapping`` names."""

    def __init__(self, f: h5py.File, path: str | os.PathLike[str], mapping: Mapping) -> None:
        self.f, self.path, self.mapping = f, path, mapping
        self.scale = 1.0  # delta in the height units
        self.origin = (0.0, 0.0)  # the patch's first cell edge (y, x) in delta

    def fail(self, reason: str) -> NoReturn:
        raise RunError(self.path, reason)

    def dataset(self, name: str) -> h5py.Dataset:
        try:
            item = self.f[name]
        except KeyError:
            self.fail(f"dataset {name} not found")
        if not isinstance(item, h5py.Dataset):
            self.fail(f"{name} is a group, not a dataset")
        return item

    def value(self, ref: Ref, what: str) -> Any:
        """The raw value ``ref`` names: a root attribute or a whole dataset."""
        if ref.kind == "dataset":
            return self.dataset(ref.name)[()]
        if ref.name not in self.f.attrs:
            self.fail(f"root attribute {ref.name} ({what}) not found")
        return self.f.attrs[ref.name]

    def number(self, ref: Ref, what: str) -> float:
        raw = self.value(ref, what)
        try:
            array = np.asarray(raw, dtype=np.float64)
        except (TypeError, ValueError):
            self.fail(f"{what} {ref.kind} {ref.name} is {raw!r}; expected a number")
        if array.size != 1:
            self.fail(f"{what} {ref.kind} {ref.name} holds {array.size} values; expected one")
        if not np.isfinite(array).all():
            self.fail(f"{what} {ref.kind} {ref.name} is NaN or Inf")
        return float(array.reshape(()))

    def run_id(self) -> str:
        ref = self.mapping.run_id
        if ref is None:
            return Path(self.path).stem
        raw = self.value(ref, "run_id")
        raw = raw.reshape(()).item() if isinstance(raw, np.ndarray) and raw.size == 1 else raw
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        if not text.strip() or "\n" in text or isinstance(raw, np.ndarray):
            self.fail(f"run_id {ref.kind} {ref.name} is {text[:40]!r}; expected one line")
        return text.strip()

    def array(self, spec: Placement, what: str) -> np.ndarray:
        """The 2-D array of ``spec`` in ``(y, x)`` order, finite, in its stored dtype."""
        data = self.dataset(spec.path)
        if data.ndim != 2:
            self.fail(f"{what} {spec.path} has shape {data.shape}; expected 2 axes {spec.axes}")
        if data.dtype.kind not in "fiu":
            self.fail(f"{what} {spec.path} has dtype {data.dtype}; expected numbers")
        values = data[()]
        values = values if spec.axes == _ORDER else values.T
        bad = ~np.isfinite(values)
        if bad.any():
            at = tuple(int(i) for i in np.argwhere(bad)[0])
            self.fail(
                f"{what} {spec.path} has {int(bad.sum())} NaN/Inf values (first at y, x = {at})"
            )
        return values

    def centres(self, spec: Placement, shape: tuple[int, int], uniform: bool) -> list[np.ndarray]:
        """Cell centres ``(y, x)`` in delta, from the patch's first cell edge."""
        if spec.spacing is not None:
            return [
                (np.arange(n) + 0.5) * (s / self.scale)
                for n, s in zip(shape, spec.spacing, strict=True)
            ]
        out = []
        for axis, name, n, origin in zip(_ORDER, spec.coordinates, shape, self.origin, strict=True):
            data = self.dataset(name)
            c = np.asarray(data[()], dtype=np.float64) / self.scale
            if c.shape != (n,):
                self.fail(f"coordinate {name} has shape {c.shape}; expected ({n},) along {axis}")
            step = np.diff(c)
            if not np.isfinite(c).all() or (step <= 0).any():
                self.fail(f"coordinate {name} is not strictly increasing")
            if uniform and n > 1 and np.ptp(step) > UNIFORM_RTOL * step.mean():
                spread = f"{step.min():.6g} to {step.max():.6g} delta"
                self.fail(f"coordinate {name} is not uniform (spacing {spread})")
            out.append(c - origin)
        return out

    def heights(self) -> tuple[np.ndarray, float]:
        spec = self.mapping.height
        raw = self.array(spec, "height")
        self.check_units(spec)  # a units attribute naming another unit than the mapping's
        if spec.units != "delta":
            delta = spec.delta
            self.scale = self.number(delta, "delta") if isinstance(delta, Ref) else delta
            if self.scale <= 0:
                self.fail(f"delta {delta.kind} {delta.name} is {self.scale}; expected > 0")
        if spec.coordinates is not None and min(raw.shape) < 2:
            self.fail(f"height {spec.path} has shape {raw.shape}; coordinates need 2 cells an axis")
        centres = self.centres(spec, raw.shape, uniform=True)
        if spec.spacing is not None:
            steps = tuple(s / self.scale for s in spec.spacing)
        else:
            steps = tuple(float(c[-1] - c[0]) / (len(c) - 1) for c in centres)
        self.origin = tuple(float(c[0]) - s / 2 for c, s in zip(centres, steps, strict=True))
        centres = [c - o for c, o in zip(centres, self.origin, strict=True)]
        heights = raw if spec.units == "delta" else np.asarray(raw, np.float64) / self.scale
        return _regrid(self, heights, centres, steps)

    def check_units(self, spec: HeightSpec) -> None:
        stored = self.dataset(spec.path).attrs.get("units")
        stored = stored.decode(errors="replace") if isinstance(stored, bytes) else stored
        for units, names in _UNIT_NAMES.items():
            if isinstance(stored, str) and stored.strip().lower() in names and units != spec.units:
                self.fail(f"height {spec.path} has units {stored!r}; the mapping says {spec.units}")

    def target(self) -> float:
        spec = self.mapping.target
        if isinstance(spec, Ref):
            return self.number(spec, "target")
        return _reduce(self, spec)


def _regrid(
    reader: _Reader, source: np.ndarray, centres: list[np.ndarray], steps: tuple[float, float]
) -> tuple[np.ndarray, float]:
    """``source`` ``(y, x)`` in delta (cell centres ``centres``, spacings ``steps``) on the
    campaign grid, and the relative rms error of the round trip back to the source grid."""
    grid = reader.mapping.grid
    for axis, n, step, cells in zip(_ORDER, source.shape, steps, grid.size, strict=True):
        need, have = cells * grid.spacing, n * step
        if have < need * (1 - GRID_RTOL):
            reader.fail(
                f"the patch covers {have:.6g} delta along {axis} ({n} cells of {step:.6g}); "
                f"the campaign grid needs {need:.6g} ({cells} cells of {grid.spacing:.6g})"
            )
        if step > grid.spacing * (1 + GRID_RTOL):
            reader.fail(
                f"the patch's cells along {axis} ({step:.6g} delta) are coarser than the "
                f"campaign grid's ({grid.spacing:.6g}); refusing to invent detail"
            )
    ny, nx = grid.size
    if all(abs(s - grid.spacing) <= SAME_GRID_RTOL * grid.spacing for s in steps):
        return np.array(source[:ny, :nx], dtype=np.float32), 0.0
    ratios = [round(grid.spacing / s) for s in steps]
    if all(abs(grid.spacing / s - r) <= GRID_RTOL * r for s, r in zip(steps, ratios, strict=True)):
        (ry, rx), fine = ratios, np.asarray(source, dtype=np.float64)
        blocks = fine[: ny * ry, : nx * rx].reshape(ny, ry, nx, rx).mean(axis=(1, 3))
    else:
        target = [(np.arange(n) + 0.5) * grid.spacing for n in grid.size]
        blocks = _interpolate(centres, source, target)
    heights = blocks.astype(np.float32)
    # the round trip covers the source cells inside the campaign extent only (the rest is cropped)
    inside = [c < n * grid.spacing for c, n in zip(centres, grid.size, strict=True)]
    covered = np.asarray(source, dtype=np.float64)[np.ix_(*inside)]
    campaign = [(np.arange(n) + 0.5) * grid.spacing for n in grid.size]
    back = _interpolate(campaign, heights, [c[m] for c, m in zip(centres, inside, strict=True)])
    scale = np.sqrt(np.mean(covered**2))
    error = float(np.sqrt(np.mean((back - covered) ** 2)) / scale) if scale > 0 else 0.0
    return heights, error


def _interpolate(points: list[np.ndarray], values: np.ndarray, at: list[np.ndarray]) -> np.ndarray:
    """Bilinear interpolation of ``values`` on ``points`` ``(y, x)`` at the grid ``at``; linear
    extrapolation beyond the outer centres (half a cell at most, as coverage was checked)."""
    interpolator = RegularGridInterpolator(
        points, np.asarray(values, dtype=np.float64), bounds_error=False, fill_value=None
    )
    yy, xx = np.meshgrid(*at, indexing="ij")
    return interpolator(np.stack([yy, xx], axis=-1))


def _reduce(reader: _Reader, spec: FieldSpec) -> float:
    """The field's ``spec.reduction`` over the cells whose centres lie in the probe region."""
    values = reader.array(spec, "target field")
    centres = reader.centres(spec, values.shape, uniform=False)
    chosen = []
    for axis, c, (lo, hi) in zip(_ORDER, centres, spec.probe, strict=True):
        half = [(c[1] - c[0]) / 2, (c[-1] - c[-2]) / 2] if len(c) > 1 else [0.0, 0.0]
        first, last = c[0] - half[0], c[-1] + half[1]
        slack = 1e-9 * max(abs(lo), abs(hi), last - first)
        if lo < first - slack or hi > last + slack:
            reader.fail(
                f"probe {axis} [{lo:g}, {hi:g}] delta lies outside the field {spec.path} "
                f"({axis} from {first:.6g} to {last:.6g} delta)"
            )
        chosen.append((c >= lo - slack) & (c <= hi + slack))
    region = np.asarray(values, dtype=np.float64)[np.ix_(*chosen)]
    if region.size == 0:
        reader.fail(f"probe region holds no cell centre of the field {spec.path}")
    if spec.reduction == "max":
        return float(region.max())
    if spec.reduction == "min":
        return float(region.min())
    return float(np.abs(region).max())
