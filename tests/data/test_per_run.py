"""Per-run synthetic campaigns (data.per_run): every layout read back with plain h5py against
the in-memory campaign of the same seed (6 samples, 16 cells)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr
import yaml

from data.errors import InputError
from data.per_run import (
    CHECKER,
    DELTA_M,
    LAYOUTS,
    MAPPING_NAME,
    fine_heights,
    mapping_for,
    write_runs,
)
from data.physics import PhysicsParams
from train.cli import main

SAMPLES, SIZE, SEED = 6, 16, 3
CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "ingest"


@pytest.fixture(scope="module")
def campaign() -> xr.Dataset:
    from data.campaign import simulate_campaign

    return simulate_campaign(SAMPLES, size=SIZE, seed=SEED)


@pytest.fixture(scope="module", params=LAYOUTS)
def runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp(request.param) / "runs"
    paths = write_runs(folder, SAMPLES, SIZE, SEED, request.param, chunk_size=4, progress=False)
    return request.param, folder, paths


def _read(path: Path, name: str) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f[name][()]


def test_files_and_run_ids(runs) -> None:
    layout, folder, paths = runs
    assert [p.name for p in paths] == [f"run-{i:06d}.h5" for i in range(SAMPLES)]
    expected = sorted([*(p.name for p in paths), MAPPING_NAME])
    assert sorted(p.name for p in folder.iterdir()) == expected
    for i, path in enumerate(paths):
        with h5py.File(path, "r") as f:
            assert f.attrs["run_id"] == f"run-{SEED}-{i:06d}"
            assert f.attrs["layout"] == layout
    assert not list(folder.glob(".*"))  # no temporary files left


def test_mapping_beside_runs(runs) -> None:
    layout, folder, _ = runs
    mapping = yaml.safe_load((folder / MAPPING_NAME).read_text())
    assert mapping["grid"] == {"size": [SIZE, SIZE], "spacing": 1.0}  # 16 delta / 16 cells
    assert mapping == mapping_for(layout, PhysicsParams.for_size(SIZE))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_shipped_mapping_describes_default_grid(layout: str) -> None:
    shipped = yaml.safe_load((CONFIGS / f"{layout}.yaml").read_text())
    assert shipped == mapping_for(layout, PhysicsParams.for_size(64))


def test_heights_and_targets(runs, campaign: xr.Dataset) -> None:
    layout, _, paths = runs
    for i, path in enumerate(paths):
        coarse = campaign["roughness"].values[i]
        omega = campaign["max_vorticity"].values[i]
        height = _read(path, "/surface/height")
        if layout == "fine-metres":
            _check_fine(path, height, coarse)
        else:
            assert height.dtype == np.float32
            np.testing.assert_array_equal(height, coarse)  # bit-identical
        if layout == "field":
            _check_field(path, omega)
        else:
            target = _read(path, "/results/max_vorticity")
            assert target.dtype == np.float32
            assert target.shape == ()
            assert target.tobytes() == omega.tobytes()


def _check_fine(path: Path, height: np.ndarray, coarse: np.ndarray) -> None:
    with h5py.File(path, "r") as f:
        delta = f.attrs["delta_m"]
        x, y = f["/surface/x"][()], f["/surface/y"][()]
    assert delta == DELTA_M
    assert height.dtype == np.float64
    assert height.shape == (2 * SIZE, 2 * SIZE)
    spacing = PhysicsParams.for_size(SIZE).cell_size / 2 * DELTA_M
    centres = (np.arange(2 * SIZE) + 0.5) * spacing
    np.testing.assert_allclose(x, centres, rtol=1e-15)
    np.testing.assert_allclose(y, centres, rtol=1e-15)
    fine = (height / delta).T  # (y, x) in delta
    means = fine.reshape(SIZE, 2, SIZE, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(means, coarse, rtol=0, atol=1e-12)
    # genuinely finer: the checkerboard deviates from the block value
    block = np.kron(coarse.astype(np.float64), np.ones((2, 2)))
    np.testing.assert_allclose(np.abs(fine - block), CHECKER * np.abs(block), atol=1e-15)
    assert np.abs(fine - block).max() > 0


def test_fine_heights_block_means_are_exact() -> None:
    coarse = np.random.default_rng(0).normal(size=(8, 8)).astype(np.float32)
    fine = fine_heights(coarse)
    assert fine.shape == (16, 16)
    assert np.array_equal(fine.reshape(8, 2, 8, 2).mean(axis=(1, 3)), coarse.astype(np.float64))


def _check_field(path: Path, omega: np.float32) -> None:
    params = PhysicsParams.for_size(SIZE)
    with h5py.File(path, "r") as f:
        assert "results" not in f
        field = f["/flow/vorticity"][()]
    assert field.dtype == np.float32
    assert field.shape == (SIZE, SIZE + params.wake)
    # probe x in [N, N + wake] * cell_size from the first cell edge: cell centres inside it
    centres = (np.arange(field.shape[1]) + 0.5) * params.cell_size
    lo, hi = SIZE * params.cell_size, (SIZE + params.wake) * params.cell_size
    wake = field[:, (centres >= lo) & (centres <= hi)]
    assert wake.shape[1] == params.wake
    np.testing.assert_allclose(np.abs(wake).max(), omega, rtol=1e-6)
    assert np.abs(field).max() <= params.omega_s


def test_refuses_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty") as info:
        write_runs(tmp_path, 2, SIZE, SEED, progress=False)
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_overwrite_replaces_runs(tmp_path: Path) -> None:
    write_runs(tmp_path, 3, SIZE, SEED, "field", progress=False)
    paths = write_runs(tmp_path, 2, SIZE, SEED, overwrite=True, progress=False)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([*(p.name for p in paths), MAPPING_NAME])  # run 2 of the old set is gone
    assert yaml.safe_load((tmp_path / MAPPING_NAME).read_text())["target"] == {
        "scalar": "/results/max_vorticity"
    }


def test_unknown_layout(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="layout 'dns' unknown"):
        write_runs(tmp_path / "runs", 2, SIZE, SEED, "dns", progress=False)
    assert not (tmp_path / "runs").exists()


def test_cli_per_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "runs"
    args = ["simulate", "--samples", "4", "--size", "16", "--quiet"]
    assert main([*args, "--per-run", str(folder), "--layout", "field"]) == 0
    out = capsys.readouterr().out
    assert f"wrote 4 field run files (16x16) to {folder}" in out
    assert len(list(folder.glob("run-*.h5"))) == 4
    assert "field" in yaml.safe_load((folder / MAPPING_NAME).read_text())["target"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--out", "c.nc", "--per-run", "runs"], "not allowed with"),
        ([], "one of the arguments --out --per-run is required"),
        (["--out", "c.nc", "--layout", "field"], "--layout applies to --per-run only"),
        (["--per-run", "runs", "--layout", "dns"], "invalid choice"),
    ],
)
def test_cli_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    extra = [str(tmp_path / a) if a in ("c.nc", "runs") else a for a in extra]
    assert main(["simulate", "--samples", "2", "--size", "16", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert "\n" not in err
    assert list(tmp_path.iterdir()) == []
