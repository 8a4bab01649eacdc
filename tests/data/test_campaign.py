"""Campaign schema, writers and validation, on tiny seeded campaigns (12 samples, 16 cells)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr

import data.campaign as campaign
from data.campaign import (
    ATTRIBUTES,
    GROUND_TRUTH,
    REQUIRED,
    SCHEMA,
    open_campaign,
    open_or_simulate,
    simulate_campaign,
    simulate_to_file,
    write_campaign,
)
from data.errors import CampaignError
from data.physics import PhysicsParams

SAMPLES, SIZE, SEED = 12, 16, 3


@pytest.fixture(scope="module")
def memory() -> xr.Dataset:
    return simulate_campaign(SAMPLES, size=SIZE, seed=SEED)


@pytest.fixture(scope="module")
def streamed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("streamed") / "campaign.nc"
    return simulate_to_file(path, SAMPLES, size=SIZE, seed=SEED, chunk_size=5, progress=False)


def _assert_one_line(err: pytest.ExceptionInfo[CampaignError], *parts: str) -> None:
    message = str(err.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


def test_round_trip(memory: xr.Dataset, tmp_path: Path) -> None:
    path = write_campaign(memory, tmp_path / "c.nc")
    with open_campaign(path) as ds:
        xr.testing.assert_identical(ds.load(), memory)


def test_streamed_file_equals_memory_bitwise(memory: xr.Dataset, streamed: Path) -> None:
    with open_campaign(streamed) as ds:
        xr.testing.assert_identical(ds.load(), memory)


def test_a_subset_of_a_simulated_file_writes_back(streamed: Path, tmp_path: Path) -> None:
    """The file's chunk layout (sized for all its samples) does not follow a subset out."""
    with campaign.open_campaign(streamed) as ds:
        part = ds.isel(sample=[5, 1, 3]).load()
        campaign.write_campaign(part, tmp_path / "part.nc")
    with campaign.open_campaign(tmp_path / "part.nc") as back:
        np.testing.assert_array_equal(back.roughness.values, part.roughness.values)
        assert back.sizes["sample"] == 3


def test_open_is_lazy_and_records_source(streamed: Path) -> None:
    with open_campaign(streamed) as ds:
        assert ds.encoding["source"] == str(streamed)
        assert not ds["roughness"].variable._in_memory


def test_h5py_reads_plain_arrays(memory: xr.Dataset, streamed: Path, tmp_path: Path) -> None:
    written = write_campaign(memory, tmp_path / "c.nc")
    for path in (streamed, written):
        with h5py.File(path, "r") as f:
            np.testing.assert_array_equal(f["roughness"][...], memory["roughness"].values)
            assert f["roughness"].dtype == np.float32
            assert f["max_vorticity"].shape == (SAMPLES,)


def test_contribution_sums_to_max_vorticity(memory: xr.Dataset) -> None:
    total = memory["contribution"].values.sum(axis=(1, 2), dtype=np.float64)
    np.testing.assert_allclose(total, memory["max_vorticity"].values, rtol=1e-5, atol=1e-6)


def test_schema_dtypes_and_peak_in_wake(memory: xr.Dataset) -> None:
    for name, (dims, dtype) in SCHEMA.items():
        assert memory[name].dims == dims
        assert memory[name].dtype == dtype
    assert set(GROUND_TRUTH) == set(SCHEMA) - set(REQUIRED)
    params = PhysicsParams.for_size(SIZE)
    assert (memory["peak_x"] >= SIZE).all()
    assert (memory["peak_x"] < params.length_x).all()
    assert set(np.unique(memory["peak_sign"])) <= {-1, 1}


def test_coords_units_and_global_attrs(streamed: Path) -> None:
    params = PhysicsParams.for_size(SIZE)
    with open_campaign(streamed) as ds:
        for name in ds.variables:
            assert ds[name].attrs["units"], name
            assert ds[name].attrs["long_name"] == ATTRIBUTES[name][1]
        centres = (np.arange(SIZE) + 0.5) * params.cell_size
        np.testing.assert_array_equal(ds["x"].values, centres)
        np.testing.assert_array_equal(ds["y"].values, centres)
        assert ds["sample"].dtype == np.int64
        np.testing.assert_array_equal(ds["sample"].values, np.arange(SAMPLES))
        assert ds.attrs["generator"] == "reduced-order roughness model"
        assert ds.attrs["seed"] == SEED
        assert ds.attrs["software_version"]
        assert ds.attrs["Conventions"].startswith("CF-")
        for key, value in params.as_attrs().items():
            assert ds.attrs[key] == value, key
        assert PhysicsParams.from_attrs(ds.attrs) == params  # read back from the file


def test_params_from_attrs_need_every_model_attribute() -> None:
    attrs = PhysicsParams.for_size(32, phi_deg=20.0).as_attrs()
    assert PhysicsParams.from_attrs(attrs) == PhysicsParams.for_size(32, phi_deg=20.0)
    del attrs["model_wake"]
    assert PhysicsParams.from_attrs(attrs) is None
    assert PhysicsParams.from_attrs({}) is None


def test_params_must_match_size() -> None:
    with pytest.raises(ValueError, match="size=8"):
        simulate_campaign(2, size=16, params=PhysicsParams.for_size(8))


# --- bad inputs -------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CampaignError) as err:
        open_campaign(tmp_path / "absent.nc")
    _assert_one_line(err, "absent.nc", "not found")


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.nc"
    path.write_text("roughness,max_vorticity\n0.1,0.2\n")
    with pytest.raises(CampaignError) as err:
        open_campaign(path)
    _assert_one_line(err, "notes.nc", "not an HDF5")


def test_truncated_file(streamed: Path, tmp_path: Path) -> None:
    path = tmp_path / "half.nc"
    payload = streamed.read_bytes()
    path.write_bytes(payload[: len(payload) // 2])
    with pytest.raises(CampaignError) as err:
        open_campaign(path)
    _assert_one_line(err, "half.nc", "truncated")


def _bad_float(memory: xr.Dataset, name: str, value: float, sample: int = 7) -> xr.Dataset:
    values = memory[name].values.copy()
    values.reshape(len(values), -1)[sample, 0] = value
    return memory.assign({name: memory[name].copy(data=values)})


@pytest.mark.parametrize(
    ("variable", "mutate", "expected"),
    [
        ("max_vorticity", lambda ds: ds.drop_vars("max_vorticity"), "missing"),
        ("roughness", lambda ds: ds.drop_vars("roughness"), "missing"),
        ("roughness", lambda ds: ds.transpose("sample", "x", "y"), "('sample', 'y', 'x')"),
        ("roughness", lambda ds: ds.rename_dims(sample="run"), "dims"),
        ("roughness", lambda ds: ds.assign(roughness=ds.roughness.astype("f8")), "float32"),
        (
            "max_vorticity",
            lambda ds: ds.assign(max_vorticity=ds.max_vorticity.astype("f8")),
            "expected float32",
        ),
        ("roughness", lambda ds: ds.isel(sample=slice(0, 0)), "at least 1"),
        ("roughness", lambda ds: ds.isel(x=slice(0, 2)), "at least 4"),
        ("roughness", lambda ds: _bad_float(ds, "roughness", np.nan), "sample index 7"),
        ("max_vorticity", lambda ds: _bad_float(ds, "max_vorticity", np.inf), "NaN or Inf"),
        ("contribution", lambda ds: _bad_float(ds, "contribution", -np.inf), "NaN or Inf"),
    ],
    ids=[
        "no-max-vorticity",
        "no-roughness",
        "transposed",
        "renamed-dim",
        "roughness-f8",
        "max-vorticity-f8",
        "empty",
        "small-grid",
        "nan-roughness",
        "inf-max-vorticity",
        "inf-contribution",
    ],
)
def test_schema_violation(memory, tmp_path: Path, variable: str, mutate, expected: str) -> None:
    path = tmp_path / "bad.nc"
    mutate(memory).to_netcdf(path, engine="h5netcdf")
    with pytest.raises(CampaignError) as err:
        open_campaign(path)
    _assert_one_line(err, "bad.nc", f"'{variable}'", expected)


def test_nan_found_across_read_blocks(memory, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(campaign, "_BLOCK_VALUES", 2 * SIZE * SIZE)  # 2 samples per block
    path = tmp_path / "bad.nc"
    _bad_float(memory, "roughness", np.nan, sample=9).to_netcdf(path, engine="h5netcdf")
    with pytest.raises(CampaignError) as err:
        open_campaign(path)
    _assert_one_line(err, "bad.nc", "'roughness'", "sample index 9")


def test_mismatched_lengths(memory: xr.Dataset, tmp_path: Path) -> None:
    # h5netcdf would silently pad the short variable with fill values
    path = tmp_path / "short.nc"
    memory.to_netcdf(path, engine="h5netcdf")
    with h5py.File(path, "a") as f:
        del f["max_vorticity"]
        short = f.create_dataset("max_vorticity", data=np.ones(SAMPLES - 2, np.float32))
        short.dims[0].attach_scale(f["sample"])
    with pytest.raises(CampaignError) as err:
        open_campaign(path)
    _assert_one_line(err, "short.nc", "'max_vorticity'", f"{SAMPLES - 2} values", "sample")


def test_plain_h5py_file_without_dimensions(memory: xr.Dataset, tmp_path: Path) -> None:
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f["roughness"] = memory["roughness"].values
        f["max_vorticity"] = memory["max_vorticity"].values
    with pytest.raises(CampaignError) as err:
        open_campaign(path)
    _assert_one_line(err, "plain.h5", "'roughness'", "('sample', 'y', 'x')")


# --- atomic writes ----------------------------------------------------------------------


def test_existing_output_refused_and_untouched(memory: xr.Dataset, tmp_path: Path) -> None:
    path = tmp_path / "taken.nc"
    path.write_bytes(b"keep me")
    with pytest.raises(CampaignError) as err:
        simulate_to_file(path, 2, size=SIZE, progress=False)
    _assert_one_line(err, "taken.nc", "--overwrite")
    with pytest.raises(CampaignError) as err:
        write_campaign(memory, path)
    _assert_one_line(err, "taken.nc", "--overwrite")
    assert path.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.nc"]


def test_overwrite_replaces(memory: xr.Dataset, tmp_path: Path) -> None:
    path = tmp_path / "taken.nc"
    path.write_bytes(b"old")
    write_campaign(memory, path, overwrite=True)
    with open_campaign(path) as ds:
        assert ds.sizes["sample"] == SAMPLES


def test_failed_stream_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = campaign.simulate_chunks

    def failing(*args, **kwargs):
        chunks = real(*args, **kwargs)
        yield next(chunks)
        raise RuntimeError("solver blew up")

    monkeypatch.setattr(campaign, "simulate_chunks", failing)
    with pytest.raises(RuntimeError, match="blew up"):
        simulate_to_file(tmp_path / "c.nc", 10, size=SIZE, chunk_size=4, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_no_file(memory, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(self, path, **kwargs):
        Path(path).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", failing)
    with pytest.raises(OSError, match="disk full"):
        write_campaign(memory, tmp_path / "c.nc")
    assert list(tmp_path.iterdir()) == []


def test_missing_output_folder(memory: xr.Dataset, tmp_path: Path) -> None:
    with pytest.raises(CampaignError) as err:
        write_campaign(memory, tmp_path / "nowhere" / "c.nc")
    _assert_one_line(err, "c.nc", "does not exist")


def test_open_or_simulate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "deep" / "er" / "c.nc"
    assert open_or_simulate(path, 3, SIZE, SEED) == path
    with open_campaign(path) as ds:
        assert ds.sizes["sample"] == 3

    def refuse(*args, **kwargs):
        raise AssertionError("must not simulate an existing campaign")

    monkeypatch.setattr(campaign, "simulate_to_file", refuse)
    assert open_or_simulate(path, 3, SIZE, SEED) == path
