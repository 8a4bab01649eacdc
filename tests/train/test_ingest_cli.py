"""``surrogate ingest`` through the real entry point: round trips of the three per-run layouts,
a corpus of bad runs among good ones (report, partial exit, ``--strict``), resuming after a
kill, adding runs to a campaign, and mapping errors in one line."""

from __future__ import annotations

import csv
import hashlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from data.campaign import open_campaign, simulate_campaign
from data.per_run import write_runs
from train.cli import main
from train.ingest_command import PARTIAL

SIZE, SEED = 16, 3


def ingest(runs: Path, out: Path, *extra: str, mapping: Path | None = None) -> int:
    mapping = mapping or runs / "mapping.yaml"
    return main(["ingest", str(runs), "--mapping", str(mapping), "--out", str(out), *extra])


def campaign_hash(path: Path) -> str:
    """sha256 of the samples sorted by run id: heights, targets and ids."""
    with open_campaign(path) as ds:
        order = np.argsort(ds["run_id"].values.astype(str))
        h = hashlib.sha256(ds["roughness"].values[order].tobytes())
        h.update(ds["max_vorticity"].values[order].tobytes())
        h.update("".join(ds["run_id"].values[order].astype(str)).encode())
    return h.hexdigest()


@pytest.mark.parametrize("layout", ["same-grid", "fine-metres", "field"])
def test_round_trip_of_each_layout(layout: str, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_runs(runs, 12, size=SIZE, seed=SEED, layout=layout, progress=False)
    out = tmp_path / "campaigns" / "c.nc"  # its folder is created
    assert ingest(runs, out, "--workers", "2") == 0
    direct = simulate_campaign(12, size=SIZE, seed=SEED)
    with open_campaign(out) as ds:
        np.testing.assert_array_equal(ds["roughness"].values, direct["roughness"].values)
        if layout == "field":  # recomputed from the stored field
            np.testing.assert_allclose(
                ds["max_vorticity"].values, direct["max_vorticity"].values, rtol=1e-6
            )
        else:
            np.testing.assert_array_equal(
                ds["max_vorticity"].values, direct["max_vorticity"].values
            )
        np.testing.assert_array_equal(ds["x"].values, direct["x"].values)
        assert list(ds["run_id"].values) == [f"run-{SEED}-{i:06d}" for i in range(12)]
        assert len(set(ds["source_sha256"].values)) == 12


def _bad_runs(good: Path, bad: Path) -> dict[str, str]:
    """Bad run files made from good ones; each name -> what its report line must say."""
    bad.mkdir()
    donor = sorted(good.glob("run-*.h5"))[0]

    def copy(name: str) -> Path:
        return Path(shutil.copy(donor, bad / name))

    def edit(name: str, change: Callable[[h5py.File], None]) -> Path:
        path = copy(name)
        with h5py.File(path, "a") as f:
            change(f)
        return path

    def replace(path: str, values) -> Callable[[h5py.File], None]:
        def change(f: h5py.File) -> None:
            attrs = dict(f[path].attrs)
            del f[path]
            f[path] = values
            f[path].attrs.update(attrs)

        return change

    h = h5py.File(donor, "r")["surface/height"][...]
    (bad / "text.h5").write_text("run 17 crashed\n")
    (bad / "empty.h5").write_bytes(b"")
    (bad / "truncated.h5").write_bytes(donor.read_bytes()[:2000])
    edit("no-height.h5", lambda f: f.__delitem__("surface/height"))
    edit("no-target.h5", lambda f: f.__delitem__("results/max_vorticity"))
    edit("nan-height.h5", replace("surface/height", np.where(h == h.max(), np.nan, h)))
    edit("inf-target.h5", replace("results/max_vorticity", np.float32(np.inf)))
    edit("three-d.h5", replace("surface/height", np.stack([h, h])))
    edit("too-small.h5", replace("surface/height", h[: SIZE // 2, : SIZE // 2]))
    edit("wrong-units.h5", lambda f: f["surface/height"].attrs.__setitem__("units", "m"))
    edit("string-height.h5", replace("surface/height", np.array(b"height")))
    edit("duplicate-id.h5", replace("surface/height", h + 0.01))  # same run id, other heights
    return {
        "text.h5": "", "empty.h5": "", "truncated.h5": "", "no-height.h5": "surface/height",
        "no-target.h5": "results/max_vorticity", "nan-height.h5": "NaN",
        "inf-target.h5": "", "three-d.h5": "", "too-small.h5": "", "wrong-units.h5": "units",
        "string-height.h5": "", "duplicate-id.h5": "duplicate run id",
    }  # fmt: skip


@pytest.mark.slow
def test_bad_runs_are_quarantined_with_their_reason_and_the_rest_ingested(tmp_path: Path) -> None:
    good, bad = tmp_path / "runs", tmp_path / "bad"
    n = 1000
    write_runs(good, n, size=SIZE, seed=SEED, progress=False)
    expected = _bad_runs(good, bad)
    out = tmp_path / "c.nc"
    args = ["ingest", str(good), str(bad), "--mapping", str(good / "mapping.yaml")]
    assert main([*args, "--out", str(out)]) == PARTIAL
    with (tmp_path / "ingest_report.csv").open() as f:
        report = {Path(r["file"]).name: r for r in csv.DictReader(f)}
    for name, says in expected.items():
        assert report[name]["status"] == "quarantined", name
        assert says in report[name]["reason"], (name, report[name]["reason"])
    with open_campaign(out) as ds:
        assert ds.sizes["sample"] == n
        np.testing.assert_array_equal(
            ds["roughness"].values, simulate_campaign(n, size=SIZE, seed=SEED)["roughness"].values
        )
    # --strict: the first bad run stops everything, nothing written
    strict_out = tmp_path / "strict.nc"
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main([*args, "--out", str(strict_out), "--strict"]) == 2
    assert not strict_out.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == sorted(
        p for p in before if not p.startswith(".")
    )


@pytest.mark.slow
def test_a_killed_ingest_resumes_to_the_same_campaign(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_runs(runs, 2000, size=SIZE, seed=SEED, progress=False)
    reference = tmp_path / "reference.nc"
    assert ingest(runs, reference, "--workers", "2") == 0
    out = tmp_path / "c.nc"
    code = "from train.cli import console_main; console_main()"
    args = ["ingest", str(runs), "--mapping", str(runs / "mapping.yaml"), "--out", str(out)]
    for delay in (1.5, 2.5):  # kill part-way, twice
        proc = subprocess.Popen([sys.executable, "-c", code, *args], stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL, "finished before it was killed"
        assert not out.exists()  # killed part-way: no campaign yet
        time.sleep(0.5)  # its reading processes end with it (none is left orphaned)
        assert subprocess.run(["pgrep", "-f", str(out)], capture_output=True).returncode == 1
    assert main(args) == 0
    assert campaign_hash(out) == campaign_hash(reference)
    with open_campaign(out) as ds:
        assert len(set(ds["source_sha256"].values)) == ds.sizes["sample"] == 2000


def test_new_runs_are_added_to_an_existing_campaign(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_runs(runs, 10, size=SIZE, seed=SEED, progress=False)
    first, later = tmp_path / "first", tmp_path / "later"
    first.mkdir()
    later.mkdir()
    for i, path in enumerate(sorted(runs.glob("run-*.h5"))):
        shutil.copy(path, (first if i < 6 else later) / path.name)
    out = tmp_path / "c.nc"
    assert ingest(first, out, mapping=runs / "mapping.yaml") == 0
    assert ingest(later, out, mapping=runs / "mapping.yaml") == 0
    with open_campaign(out) as ds:
        assert ds.sizes["sample"] == 10
        np.testing.assert_array_equal(
            ds["roughness"].values, simulate_campaign(10, size=SIZE, seed=SEED)["roughness"].values
        )


MAPPING_ERRORS: dict[str, tuple[Callable[[dict], None], tuple[str, ...]]] = {
    "unknown-key": (lambda m: m["height"].update(unit="delta"), ("height.unit", "height.units")),
    "unknown-units": (lambda m: m["height"].update(units="cm"), ("height.units", "cm")),
    "path-not-in-the-files": (
        lambda m: m["height"].update(path="/surface/heigth"),
        ("/surface/heigth",),
    ),
    "probe-outside-the-field": (
        lambda m: m["target"]["field"].update(probe={"x": [90.0, 99.0], "y": [0.0, 16.0]}),
        ("probe",),
    ),
}


@pytest.mark.parametrize("case", list(MAPPING_ERRORS))
def test_mapping_errors_are_one_line_naming_the_mapping(
    case: str, tmp_path: Path, error_line: Callable[..., str]
) -> None:
    runs = tmp_path / "runs"
    write_runs(runs, 4, size=SIZE, seed=SEED, layout="field", progress=False)
    mapping = yaml.safe_load((runs / "mapping.yaml").read_text())
    change, parts = MAPPING_ERRORS[case]
    change(mapping)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(mapping))
    out = tmp_path / "c.nc"
    assert ingest(runs, out, mapping=bad) == 2
    error_line("bad.yaml", *parts)
    assert not out.exists()


def test_a_run_on_another_grid_spacing_is_quarantined(tmp_path: Path) -> None:
    """Runs in metres with their own coordinates: one whose cells are twice as long (it no
    longer refines the campaign grid) is quarantined with the reason; the others ingested."""
    runs = tmp_path / "runs"
    write_runs(runs, 6, size=SIZE, seed=SEED, layout="fine-metres", progress=False)
    odd = runs / "run-000005.h5"
    with h5py.File(odd, "a") as f:
        for axis in ("x", "y"):
            coarse = f[f"surface/{axis}"][...] * 4  # cells 4x longer: coarser than the campaign
            del f[f"surface/{axis}"]
            f[f"surface/{axis}"] = coarse
    out = tmp_path / "c.nc"
    assert ingest(runs, out) == PARTIAL
    with (tmp_path / "ingest_report.csv").open() as f:
        report = {Path(r["file"]).name: r for r in csv.DictReader(f)}
    assert report["run-000005.h5"]["status"] == "quarantined"
    assert "coarser" in report["run-000005.h5"]["reason"]
    with open_campaign(out) as ds:
        assert ds.sizes["sample"] == 5
