"""Ingest of per-run files: tiny HDF5 runs written by hand with h5py, read through a mapping
onto the campaign grid; exact answers for copies, block means and probes; every mapping
error names the file and key, every run error says what is wrong with the run."""

from __future__ import annotations

import hashlib

import h5py
import numpy as np
import pytest
import yaml

from data.errors import InputError
from data.ingest import Mapping, RunError, load_mapping, read_run

N, SPACING = 8, 0.25  # campaign grid of the tests: 8 x 8 cells of 0.25 delta
GRID = {"size": [N, N], "spacing": SPACING}
SCALAR = {"scalar": "/results/max_vorticity"}


def write_mapping(folder, tree: dict, name: str = "mapping.yaml"):
    path = folder / name
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def mapping(folder, **parts) -> Mapping:
    """A mapping of a same-grid run in delta with a scalar target, with ``parts`` replaced."""
    height = {"path": "/surface/height", "units": "delta", "spacing": {"x": SPACING, "y": SPACING}}
    tree = {"run_id": {"attribute": "run_id"}, "height": height, "target": SCALAR, "grid": GRID}
    return load_mapping(write_mapping(folder, {**tree, **parts}))


def write_run(path, heights, target=1.5, attrs=None, **datasets):
    """A run file: ``/surface/height``, the scalar target, root ``attrs`` and more datasets."""
    with h5py.File(path, "w") as f:
        f.attrs.update({"run_id": "run-7", **(attrs or {})})
        f["surface/height"] = heights
        if target is not None:
            f["results/max_vorticity"] = np.float32(target)
        for name, values in datasets.items():
            f[name.replace("__", "/")] = values
    return path


@pytest.fixture
def heights():
    return np.random.default_rng(0).random((N, N), dtype=np.float32) * 0.3


# --- reading runs ---------------------------------------------------------------------------


def test_same_grid_is_copied_bit_for_bit(tmp_path, heights):
    path = write_run(tmp_path / "r.h5", heights, target=np.float32(0.123))
    run = read_run(path, mapping(tmp_path))
    assert run.heights.dtype == np.float32
    assert run.heights.tobytes() == heights.tobytes()
    assert run.target == float(np.float32(0.123))
    assert run.run_id == "run-7"
    assert run.interpolation_error == 0.0
    assert run.source == str(path)
    assert run.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_larger_patch_is_cropped_to_the_first_cells(tmp_path):
    big = np.random.default_rng(1).random((N + 3, N + 5), dtype=np.float32)
    run = read_run(write_run(tmp_path / "r.h5", big), mapping(tmp_path))
    np.testing.assert_array_equal(run.heights, big[:N, :N])


def test_run_id_defaults_to_the_file_stem(tmp_path, heights):
    tree = {"height": {"path": "/surface/height", "spacing": SPACING}, "target": SCALAR}
    m = load_mapping(write_mapping(tmp_path, {**tree, "grid": GRID}))
    assert read_run(write_run(tmp_path / "case-12.h5", heights), m).run_id == "case-12"


def fine_field(coarse: np.ndarray) -> np.ndarray:
    """A 2x finer field whose 2x2 block means are ``coarse``: each block is ``c`` plus a
    zero-sum checkerboard of amplitude ``c / 8`` (exact in binary)."""
    block = np.kron(coarse.astype(np.float64), np.ones((2, 2)))
    parity = np.indices(block.shape).sum(axis=0) % 2
    return block * np.where(parity == 0, 1.125, 0.875)


def test_finer_grid_in_metres_transposed_gives_block_means(tmp_path, heights):
    delta = 0.004  # m
    fine = fine_field(heights) * delta  # (y, x) in metres
    centres = (np.arange(2 * N) + 0.5) * SPACING / 2 * delta
    path = write_run(
        tmp_path / "r.h5",
        fine.T,
        attrs={"delta_m": delta},
        surface__x=centres,
        surface__y=centres,
    )
    height = {
        "path": "/surface/height",
        "units": "m",
        "delta": {"attribute": "delta_m"},
        "axes": ["x", "y"],
        "coordinates": {"x": "/surface/x", "y": "/surface/y"},
    }
    run = read_run(path, mapping(tmp_path, height=height))
    np.testing.assert_allclose(run.heights, heights, rtol=1e-6)
    assert 0 < run.interpolation_error < 1.0  # the checkerboard is lost, and must show


def test_smooth_fine_field_has_a_small_interpolation_error(tmp_path):
    x = (np.arange(2 * N) + 0.5) * SPACING / 2
    fine = (0.1 + 0.02 * x[None, :] + 0.01 * x[:, None]).astype(np.float32)  # linear in delta
    height = {"path": "/surface/height", "units": "delta", "spacing": SPACING / 2}
    run = read_run(write_run(tmp_path / "r.h5", fine), mapping(tmp_path, height=height))
    c = (np.arange(N) + 0.5) * SPACING
    np.testing.assert_allclose(run.heights, 0.1 + 0.02 * c[None, :] + 0.01 * c[:, None], rtol=1e-6)
    assert run.interpolation_error < 1e-6


def test_non_integer_refinement_interpolates_linearly(tmp_path):
    step = SPACING / 1.25  # 10 source cells span 8 campaign cells
    x = (np.arange(10) + 0.5) * step
    fine = 0.2 + 0.05 * x[None, :] - 0.03 * x[:, None]
    height = {"path": "/surface/height", "units": "mm", "delta": 2.0, "spacing": step * 2.0}
    run = read_run(write_run(tmp_path / "r.h5", fine * 2.0), mapping(tmp_path, height=height))
    c = (np.arange(N) + 0.5) * SPACING
    np.testing.assert_allclose(run.heights, 0.2 + 0.05 * c[None, :] - 0.03 * c[:, None], rtol=1e-6)
    assert run.interpolation_error < 1e-6


def field_target(probe=None, **extra) -> dict:
    field = {"path": "/flow/vorticity", "spacing": {"x": SPACING, "y": SPACING}}
    return {"field": {**field, "probe": probe or {"x": [2.0, 3.0], "y": [0.0, 2.0]}, **extra}}


@pytest.mark.parametrize(("reduction", "expected"), [("max_abs", 9.5), ("max", 4.0), ("min", -9.5)])
def test_field_target_is_reduced_over_the_probe(tmp_path, heights, reduction, expected):
    w = np.zeros((N, 3 * N), dtype=np.float32)  # patch plus 2 patch lengths of wake
    w[3, 9] = 4.0  # x centre 2.375: inside the probe x [2, 3]
    w[5, 10] = -9.5  # x centre 2.625
    w[3, 7] = 50.0  # x centre 1.875: upstream of the probe
    w[2, 14] = -70.0  # x centre 3.625: downstream of the probe
    path = write_run(tmp_path / "r.h5", heights, target=None, flow__vorticity=w)
    run = read_run(path, mapping(tmp_path, target=field_target(reduction=reduction)))
    assert run.target == expected


def test_field_with_coordinates_shares_the_patch_origin(tmp_path, heights):
    offset = 10.0  # the solver's patch starts at x = 10 delta
    xs = offset + (np.arange(N) + 0.5) * SPACING
    wx = offset + (np.arange(3 * N) + 0.5) * SPACING
    ys = (np.arange(N) + 0.5) * SPACING
    w = np.zeros((3 * N, N), dtype=np.float32)  # stored (x, y)
    w[9, 3], w[14, 2] = -4.0, 70.0
    path = write_run(tmp_path / "r.h5", heights, target=None, flow__vorticity=w, x=xs, y=ys, wx=wx)
    height = {"path": "/surface/height", "coordinates": {"x": "/x", "y": "/y"}}
    coords = {"x": "/wx", "y": "/y"}
    target = field_target(axes=["x", "y"], coordinates=coords)
    del target["field"]["spacing"]
    run = read_run(path, mapping(tmp_path, height=height, target=target))
    assert run.target == 4.0
    np.testing.assert_array_equal(run.heights, heights)


# --- run errors -----------------------------------------------------------------------------


def run_error(path, m) -> str:
    with pytest.raises(RunError) as caught:
        read_run(path, m)
    assert str(path) in str(caught.value)
    assert "\n" not in caught.value.reason
    return caught.value.reason


def test_missing_text_and_truncated_files_are_run_errors(tmp_path, heights):
    m = mapping(tmp_path)
    assert "not found" in run_error(tmp_path / "absent.h5", m)
    (tmp_path / "text.h5").write_text("not hdf5\n")
    assert "not an HDF5" in run_error(tmp_path / "text.h5", m)
    good = write_run(tmp_path / "good.h5", np.zeros((64, 64), np.float32))
    cut = tmp_path / "cut.h5"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert "truncated" in run_error(cut, m)


def test_missing_dataset_and_attribute_are_named(tmp_path, heights):
    m = mapping(tmp_path)
    with h5py.File(tmp_path / "r.h5", "w") as f:
        f["elsewhere"] = heights
    assert "/surface/height not found" in run_error(tmp_path / "r.h5", m)
    path = write_run(tmp_path / "r2.h5", heights, attrs={"run_id": "x"})
    height = {"path": "/surface/height", "units": "m", "delta": {"attribute": "delta_m"}}
    height["spacing"] = 0.001
    assert "attribute delta_m" in run_error(path, mapping(tmp_path, height=height))


def test_missing_target_is_named(tmp_path, heights):
    path = write_run(tmp_path / "r.h5", heights, target=None)
    assert "/results/max_vorticity not found" in run_error(path, mapping(tmp_path))


@pytest.mark.parametrize("where", ["heights", "field"])
def test_nan_values_are_refused(tmp_path, heights, where):
    w = np.zeros((N, 2 * N), np.float32)
    (heights if where == "heights" else w)[2, 3] = np.nan
    path = write_run(tmp_path / "r.h5", heights, target=None, flow__vorticity=w)
    reason = run_error(path, mapping(tmp_path, target=field_target()))
    assert "NaN/Inf" in reason
    assert "(first at y, x = (2, 3))" in reason


def test_wrong_dimensionality_is_refused(tmp_path, heights):
    path = write_run(tmp_path / "r.h5", heights[None])
    assert "expected 2 axes" in run_error(path, mapping(tmp_path))


@pytest.mark.parametrize(
    ("coordinate", "message"),
    [
        (np.arange(N)[::-1] * SPACING, "not strictly increasing"),
        (np.cumsum(np.linspace(0.2, 0.3, N)), "not uniform"),
        (np.arange(N - 1) * SPACING, "has shape (7,); expected (8,)"),
    ],
)
def test_bad_coordinates_are_refused(tmp_path, heights, coordinate, message):
    path = write_run(tmp_path / "r.h5", heights, x=coordinate, y=(np.arange(N) + 0.5) * SPACING)
    height = {"path": "/surface/height", "coordinates": {"x": "/x", "y": "/y"}}
    assert message in run_error(path, mapping(tmp_path, height=height))


def test_patch_that_does_not_cover_the_grid_is_refused(tmp_path):
    path = write_run(tmp_path / "r.h5", np.zeros((12, 12), np.float32))  # 12 x 0.125 < 8 x 0.25
    height = {"path": "/surface/height", "spacing": SPACING / 2}
    reason = run_error(path, mapping(tmp_path, height=height))
    assert "covers 1.5 delta along y" in reason
    assert "needs 2" in reason


def test_coarser_patch_is_refused(tmp_path):
    path = write_run(tmp_path / "r.h5", np.zeros((N, N), np.float32))
    height = {"path": "/surface/height", "spacing": 2 * SPACING}
    assert "coarser than the campaign grid" in run_error(path, mapping(tmp_path, height=height))


def test_probe_outside_the_field_is_refused(tmp_path, heights):
    path = write_run(tmp_path / "r.h5", heights, flow__vorticity=np.zeros((N, N + 2), np.float32))
    probe = {"x": [2.0, 3.0], "y": [0.0, 2.0]}  # the field ends at x = 2.5 delta
    reason = run_error(path, mapping(tmp_path, target=field_target(probe)))
    assert "probe x [2, 3] delta lies outside the field /flow/vorticity" in reason


def test_units_attribute_that_contradicts_the_mapping_is_refused(tmp_path, heights):
    path = write_run(tmp_path / "r.h5", heights)
    with h5py.File(path, "a") as f:
        f["surface/height"].attrs["units"] = "mm"
    height = {"path": "/surface/height", "units": "m", "delta": 0.01, "spacing": 0.0025}
    assert "has units 'mm'; the mapping says m" in run_error(path, mapping(tmp_path, height=height))


# --- mapping errors -------------------------------------------------------------------------


def mapping_error(tmp_path, tree) -> str:
    path = write_mapping(tmp_path, tree, name="bad.yaml")
    with pytest.raises(InputError) as caught:
        load_mapping(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    return message


BASE = {"height": {"path": "/h", "spacing": 0.25}, "target": SCALAR}


@pytest.mark.parametrize(
    ("tree", "expected"),
    [
        (
            {**BASE, "height": {"path": "/h", "unit": "m", "spacing": 1}},
            "unknown key height.unit; did you mean height.units?",
        ),
        ({**BASE, "grdi": GRID}, "unknown key grdi; did you mean grid?"),
        (
            {**BASE, "height": {"path": "/h", "units": "cm"}},
            "height.units: got 'cm'; expected m, mm or delta",
        ),
        ({"target": SCALAR}, "missing required key height"),
        ({**BASE, "height": {"spacing": 0.25}}, "missing required key height.path"),
        (
            {**BASE, "height": {"path": "/h", "units": "m", "spacing": 1}},
            "missing required key height.delta",
        ),
        (
            {**BASE, "target": {**SCALAR, **field_target()}},
            "target: give exactly one of scalar, field (2 given)",
        ),
        ({**BASE, "target": {}}, "target: give exactly one of scalar, field (0 given)"),
        ({**BASE, "height": {"path": "/h"}}, "height: give exactly one of coordinates, spacing"),
        (
            {**BASE, "height": {"path": "/h", "spacing": -1}},
            "height.spacing: got -1; expected a positive",
        ),
        ({**BASE, "height": {"path": "/h", "spacing": 1, "axes": ["x", "z"]}}, "height.axes"),
        ({**BASE, "grid": {"size": [2, 64]}}, "grid.size: got [2, 64]; expected at least 4"),
        (
            {**BASE, "target": field_target(reduction="mean")},
            "target.field.reduction: got 'mean'; expected max_abs, max, min",
        ),
        ({**BASE, "target": field_target({"x": [3.0, 2.0], "y": [0, 1]})}, "target.field.probe.x"),
        (
            {**BASE, "run_id": {"attr": "id"}},
            "unknown key run_id.attr; did you mean run_id.attribute?",
        ),
        ([1, 2], "mapping: got [1, 2]; expected a mapping with keys height, target"),
    ],
)
def test_mapping_errors_name_the_file_and_key(tmp_path, tree, expected):
    assert expected in mapping_error(tmp_path, tree)


def test_unreadable_mappings_are_input_errors(tmp_path):
    with pytest.raises(InputError, match=r"absent\.yaml: mapping file not found"):
        load_mapping(tmp_path / "absent.yaml")
    (tmp_path / "broken.yaml").write_text("height: {path: /h\ntarget: x\n")
    with pytest.raises(InputError, match=r"broken.yaml: not valid YAML at line \d"):
        load_mapping(tmp_path / "broken.yaml")


def test_digest_ignores_key_order_and_spelled_out_defaults(tmp_path):
    a = {"height": {"path": "/h", "spacing": {"x": 0.25, "y": 0.25}}, "target": SCALAR}
    b = {
        "grid": {"spacing": 0.25, "size": [64, 64]},
        "target": {"scalar": {"dataset": "/results/max_vorticity"}},
        "height": {"spacing": 0.25, "axes": ["y", "x"], "units": "delta", "path": "/h"},
    }
    first = load_mapping(write_mapping(tmp_path, a, "a.yaml"))
    second = load_mapping(write_mapping(tmp_path, b, "b.yaml"))
    assert first.digest == second.digest
    assert len(first.digest) == 64
    changed = {**a, "grid": {"spacing": 0.5}}
    assert load_mapping(write_mapping(tmp_path, changed, "c.yaml")).digest != first.digest
