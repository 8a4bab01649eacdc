"""``surrogate ingest``: per-run simulation files -> one campaign, robust and resumable.

Each run file is read through a YAML mapping (:func:`data.ingest.read_run`) onto the campaign
grid. Runs that fail are quarantined with their reason in ``ingest_report.csv`` and the rest
are ingested; ``--strict`` stops at the first bad run instead. Every ingested run is kept in a
journal beside the output (``.NAME.ingest/``, one file per run, keyed by the run file's sha256
and the mapping), so a killed ingest picks up where it stopped and a re-run with new files adds
them; the campaign itself is written only when complete, atomically.

Exit status: 0 every run ingested; 3 partial (some runs quarantined, the campaign holds the
rest); 2 bad input (mapping, arguments, or the first bad run with ``--strict``).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import glob
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data.atomic import atomic_path, check_outputs
from data.errors import InputError
from data.provenance import sha256
from train.inputs import OneLineParser, positive_int

PARTIAL = 3  # exit status: some runs quarantined
RUN_SUFFIXES = (".h5", ".hdf5", ".nc", ".nc4")


def ingest_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="surrogate ingest",
        description="Per-run simulation files -> one campaign file, through a YAML mapping "
        "(docs/ingest.md). Bad runs are quarantined with their reason in ingest_report.csv; "
        f"exit status {PARTIAL} says the campaign is partial.",
    )
    parser.add_argument("sources", nargs="+", help="run files, folders or glob patterns")
    parser.add_argument("--mapping", type=Path, required=True, help="YAML mapping of a run file")
    parser.add_argument("--out", type=Path, required=True, help="campaign file to write or extend")
    parser.add_argument(
        "--workers", type=positive_int, default=os.cpu_count() or 1, help="reading processes"
    )
    parser.add_argument("--strict", action="store_true", help="stop at the first bad run")
    return parser


def ingest_command(args: Sequence[str]) -> int:
    opts = ingest_parser().parse_args(args)
    report = ingest(opts.sources, opts.mapping, opts.out, opts.workers, opts.strict)
    return PARTIAL if report["quarantined"] else 0


def run_files(sources: Sequence[str]) -> list[Path]:
    """Every run file named by ``sources`` (files, folders searched recursively, globs), in
    the order of the sources and sorted within each; each file once."""
    found: dict[Path, None] = {}
    for source in sources:
        path = Path(source)
        if path.is_dir():
            matches = [p for p in path.rglob("*") if p.suffix in RUN_SUFFIXES and p.is_file()]
        elif path.is_file():
            matches = [path]
        else:
            matches = [Path(p) for p in glob.glob(source, recursive=True) if Path(p).is_file()]
            if not matches:
                raise InputError(f"{source}: no such file, folder or matching files")
        found.update(dict.fromkeys(sorted(matches)))
    if not found:
        raise InputError(f"{' '.join(sources)}: no run files ({', '.join(RUN_SUFFIXES)})")
    return list(found)


PROBE_RUNS = 3  # runs read up front: a reason shared by all of them is the mapping's fault


def _check_mapping_fits(mapping: Path, spec, files: list[Path]) -> None:
    """Read the first runs: if each fails for the same reason (a dataset path the files do
    not have, a probe outside the field), the mapping is wrong, not the runs: one line, before
    anything is written."""
    from data.ingest import RunError, read_run

    reasons = []
    for path in files[:PROBE_RUNS]:
        try:
            read_run(path, spec)
            return
        except RunError as exc:
            reasons.append(exc.reason)
    if len(reasons) >= min(PROBE_RUNS, len(files)) and len(set(reasons)) == 1 and len(files) > 1:
        raise InputError(
            f"{mapping}: {reasons[0]} in each of the first {len(reasons)} runs ({files[0]}, ...); "
            "the mapping does not describe these files"
        )


def _die_with_parent() -> None:
    """Worker initialiser: end with the ingest process, even when it is killed with -9
    (Linux: PR_SET_PDEATHSIG); elsewhere workers end when their queue closes."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _read(job: tuple[str, str, str]) -> tuple[str, dict | None, str | None]:
    """Worker: one run read through the mapping, or the reason it was quarantined."""
    from data.ingest import RunError, load_mapping, read_run

    path, mapping_path, journal = job
    try:
        run = read_run(Path(path), load_mapping(Path(mapping_path)))
    except RunError as exc:
        return path, None, exc.reason
    record = {
        "run_id": run.run_id, "source": str(path), "sha256": run.sha256,
        "interpolation_error": float(run.interpolation_error),
    }  # fmt: skip
    target = Path(journal) / f"{run.sha256}.npz"
    with atomic_path(target) as tmp, tmp.open("wb") as f:
        np.savez(f, heights=run.heights, target=np.float32(run.target), **record)
    return path, record, None


def ingest(
    sources: Sequence[str], mapping: Path, out: Path, workers: int = 1, strict: bool = False
) -> dict:
    """Ingest the run files of ``sources`` into the campaign ``out``; returns the counts."""
    from data.ingest import load_mapping

    mapping, out = Path(mapping), Path(out)
    spec = load_mapping(mapping)  # a bad mapping stops here, before any run is read
    files = run_files(sources)
    _check_mapping_fits(mapping, spec, files)
    reports = [out, out.with_name("ingest_report.csv")]  # the output's folder is created
    check_outputs(reports, overwrite=True, new_folder=True, inputs=files)
    journal = out.with_name(f".{out.name}.ingest") / spec.digest[:16]
    journal.mkdir(parents=True, exist_ok=True)
    existing = _existing(out)
    digests = {p: sha256(p) for p in files}
    done = {p.stem for p in journal.glob("*.npz")}
    todo = [p for p in files if digests[p] not in done and digests[p] not in existing]
    rows: list[dict] = [
        {"file": str(p), "status": "already ingested", "reason": ""}
        for p in files if p not in todo
    ]  # fmt: skip
    start = time.perf_counter()
    jobs = [(str(p), str(mapping), str(journal)) for p in todo]
    bar = tqdm(total=len(jobs), desc="ingesting", unit="run")
    quarantined, errors = 0, []
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_die_with_parent)
    with bar, pool:
        for path, record, reason in pool.map(_read, jobs, chunksize=16):
            bar.update()
            if reason is not None:
                if strict:
                    pool.shutdown(cancel_futures=True)
                    raise InputError(f"{path}: {reason} (--strict: nothing written)")
                quarantined += 1
                rows.append({"file": path, "status": "quarantined", "reason": reason})
            else:
                rows.append({"file": path, "status": "ingested", "reason": ""})
                errors.append(record["interpolation_error"])
    order = {str(p): i for i, p in enumerate(files)}
    runs, duplicates = _assemble(journal, existing, out, spec.grid, order)
    for path, reason in duplicates:
        quarantined += 1
        for row in rows:
            if row["file"] == path:
                row.update(status="quarantined", reason=reason)
    _write_report(out.with_name("ingest_report.csv"), rows)
    seconds = time.perf_counter() - start
    if errors and max(errors) > 0:
        print(
            f"regridded onto {spec.grid.size[0]}x{spec.grid.size[1]} cells of "
            f"{spec.grid.spacing:g} delta: interpolation error (rms, relative to the rms height) "
            f"median {np.median(errors):.3g}, largest {max(errors):.3g} (per design: "
            "interpolation_error)"
        )
    print(
        f"{len(runs)} runs in {out} ({len(todo)} read in {seconds:.1f} s, "
        f"{len(todo) / max(seconds, 1e-9):.0f} runs/s); {quarantined} quarantined "
        f"(see {out.with_name('ingest_report.csv')})"
    )
    return {"runs": len(runs), "read": len(todo), "quarantined": quarantined}


def _existing(out: Path) -> set[str]:
    """The source sha256 of every run already in the campaign ``out`` (none if absent)."""
    if not out.exists():
        return set()
    from data.campaign import open_campaign

    with open_campaign(out, check_values=False) as ds:
        if "source_sha256" not in ds:
            raise InputError(
                f"{out}: exists but was not written by 'surrogate ingest' (no source_sha256); "
                "give another --out"
            )
        return {str(s) for s in ds["source_sha256"].values}


# per-design provenance the campaign carries besides the schema: (dtype, units, long name)
PROVENANCE = {
    "run_id": (str, "1", "run id of the design (from its run file, or the file name)"),
    "source_file": (str, "1", "the run file the design was read from"),
    "source_sha256": (str, "1", "sha256 of that run file"),
    "interpolation_error": (np.float32, "1", "rms regridding error relative to the rms height"),
}
_CHUNK = 64  # samples per HDF5 chunk and per write: memory stays at one chunk of designs


def _assemble(
    journal: Path, existing: set[str], out: Path, grid, order: dict[str, int]
) -> tuple[list[str], list]:
    """The campaign from the existing one plus every journalled run, sorted by run id and
    streamed to ``out`` chunk by chunk (memory bounded by a chunk, not the campaign). A run
    id seen twice with different content keeps the first (the campaign's own, then in the
    order of the sources); the later one is quarantined."""
    from data.campaign import open_campaign

    runs: dict[str, dict] = {}
    duplicates = []
    old = open_campaign(out, check_values=False) if existing else None
    if old is not None:
        for i, (run_id, source, sha, error) in enumerate(
            zip(*(old[k].values for k in PROVENANCE), strict=True)
        ):
            runs[str(run_id)] = {"run_id": str(run_id), "source_sha256": str(sha),
                                 "source_file": str(source), "interpolation_error": float(error),
                                 "from": ("campaign", i)}  # fmt: skip
    records = []
    for path in journal.glob("*.npz"):
        with np.load(path) as z:  # the metadata only; heights are read when written
            records.append(
                {k: z[k].item() for k in ("run_id", "source", "sha256", "interpolation_error")}
                | {"path": path}
            )
    records.sort(key=lambda r: (order.get(str(r["source"]), len(order)), str(r["sha256"])))
    for r in records:
        run_id = str(r["run_id"])
        if run_id in runs:
            if runs[run_id]["source_sha256"] != str(r["sha256"]):
                reason = f"duplicate run id {run_id!r} with different content"
                duplicates.append((str(r["source"]), reason))
            continue
        runs[run_id] = {"run_id": run_id, "source_sha256": str(r["sha256"]),
                        "source_file": str(r["source"]),
                        "interpolation_error": float(r["interpolation_error"]),
                        "from": ("journal", r["path"])}  # fmt: skip
    if not runs:
        raise InputError(f"{out}: no run could be ingested; see ingest_report.csv")
    try:
        _write_campaign([runs[k] for k in sorted(runs)], old, out, grid)
    finally:
        if old is not None:
            old.close()
    return list(runs), duplicates


def _write_campaign(rows: list[dict], old, out: Path, grid) -> None:
    import h5netcdf
    import h5py

    from data.atomic import HDF5_OVERHEAD, check_space
    from data.campaign import ATTRIBUTES, CONVENTIONS, software_version

    n, (ny, nx) = len(rows), grid.size
    check_space(out, n * ny * nx * 4 + n * 256 + HDF5_OVERHEAD, f"a campaign of {n} runs")
    with atomic_path(out) as tmp, h5netcdf.File(tmp, "w") as f:
        f.dimensions = {"sample": n, "y": ny, "x": nx}
        f.create_variable("sample", ("sample",), data=np.arange(n, dtype=np.int64))
        for dim, size in (("y", ny), ("x", nx)):
            f.create_variable(dim, (dim,), data=(np.arange(size) + 0.5) * grid.spacing)
        heights = f.create_variable(
            "roughness", ("sample", "y", "x"), np.float32, chunks=(min(n, _CHUNK), ny, nx)
        )
        targets = np.zeros(n, np.float32)
        for start in range(0, n, _CHUNK):
            block = rows[start : start + _CHUNK]
            heights[start : start + len(block)] = np.stack([_heights(r, old) for r in block])
            targets[start : start + len(block)] = [_target(r, old) for r in block]
        f.create_variable("max_vorticity", ("sample",), data=targets)
        for name, (dtype, units, long_name) in PROVENANCE.items():
            values = [r[name] for r in rows]
            if dtype is str:
                f.create_variable(name, ("sample",), dtype=h5py.string_dtype(),
                                  data=np.array(values, dtype=object))  # fmt: skip
            else:
                f.create_variable(name, ("sample",), data=np.asarray(values, dtype=dtype))
            f.variables[name].attrs.update(units=units, long_name=long_name)
        for name, (units, long_name) in ATTRIBUTES.items():
            if name in f.variables:
                f.variables[name].attrs.update(units=units, long_name=long_name)
        f.attrs.update(
            Conventions=CONVENTIONS, title="campaign ingested from per-run simulation files",
            generator="surrogate ingest", software_version=software_version(),
        )  # fmt: skip


def _heights(row: dict, old) -> np.ndarray:
    kind, where = row["from"]
    if kind == "campaign":
        return old["roughness"][where].values
    with np.load(where) as z:
        return z["heights"]


def _target(row: dict, old) -> float:
    kind, where = row["from"]
    if kind == "campaign":
        return float(old["max_vorticity"][where].values)
    with np.load(where) as z:
        return float(z["target"])


def _write_report(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["file", "status", "reason"])
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: r["file"]))
