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
import hashlib
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data.atomic import atomic_path, check_outputs
from data.errors import InputError
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


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
    digests = {p: _digest(p) for p in files}
    done = {p.stem for p in journal.glob("*.npz")}
    todo = [p for p in files if digests[p] not in done and digests[p] not in existing]
    rows: list[dict] = [
        {"file": str(p), "status": "already ingested", "reason": ""}
        for p in files if p not in todo
    ]  # fmt: skip
    start = time.perf_counter()
    jobs = [(str(p), str(mapping), str(journal)) for p in todo]
    bar = tqdm(total=len(jobs), desc="ingesting", unit="run")
    quarantined = 0
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_die_with_parent)
    with bar, pool:
        for path, _record, reason in pool.map(_read, jobs, chunksize=16):
            bar.update()
            if reason is not None:
                if strict:
                    pool.shutdown(cancel_futures=True)
                    raise InputError(f"{path}: {reason} (--strict: nothing written)")
                quarantined += 1
                rows.append({"file": path, "status": "quarantined", "reason": reason})
            else:
                rows.append({"file": path, "status": "ingested", "reason": ""})
    order = {str(p): i for i, p in enumerate(files)}
    runs, duplicates = _assemble(journal, existing, out, spec.grid, order)
    for path, reason in duplicates:
        quarantined += 1
        for row in rows:
            if row["file"] == path:
                row.update(status="quarantined", reason=reason)
    _write_report(out.with_name("ingest_report.csv"), rows)
    seconds = time.perf_counter() - start
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


def _assemble(
    journal: Path, existing: set[str], out: Path, grid, order: dict[str, int]
) -> tuple[list[str], list]:
    """The campaign from the existing one plus every journalled run, sorted by run id. A run
    id seen twice with different content keeps the first (the campaign's own, then in the
    order of the sources); the later one is quarantined."""
    import xarray as xr

    from data.campaign import ATTRIBUTES, open_campaign, write_campaign

    runs: dict[str, dict] = {}
    duplicates = []
    parts = []
    if existing:
        with open_campaign(out) as ds:
            old = ds.load()
        for i in range(old.sizes["sample"]):
            runs[str(old["run_id"].values[i])] = {"sha256": str(old["source_sha256"].values[i])}
        parts.append(old.drop_vars(["sample", "y", "x"], errors="ignore"))
    records = []
    for path in journal.glob("*.npz"):
        with np.load(path) as z:
            records.append({k: z[k] for k in z.files})
    records.sort(key=lambda r: (order.get(str(r["source"]), len(order)), str(r["sha256"])))
    for record in records:
        run_id = str(record["run_id"])
        if run_id in runs:
            if runs[run_id]["sha256"] != str(record["sha256"]):
                duplicates.append(
                    (str(record["source"]), f"duplicate run id {run_id!r} with different content")
                )
            continue
        runs[run_id] = {"sha256": str(record["sha256"]), "record": record}
    new = [r["record"] for r in runs.values() if "record" in r]
    if new:
        ds = xr.Dataset(
            {
                "roughness": (("sample", "y", "x"), np.stack([r["heights"] for r in new])),
                "max_vorticity": ("sample", np.array([r["target"] for r in new], np.float32)),
                "run_id": ("sample", np.array([str(r["run_id"]) for r in new], dtype=object)),
                "source_file": ("sample", np.array([str(r["source"]) for r in new], dtype=object)),
                "source_sha256": ("sample", np.array([str(r["sha256"]) for r in new],
                                                     dtype=object)),
                "interpolation_error": ("sample", np.array(
                    [float(r["interpolation_error"]) for r in new], np.float32)),
            }
        )  # fmt: skip
        parts.append(ds)
    if not parts:
        raise InputError(f"{out}: no run could be ingested; see ingest_report.csv")
    campaign = xr.concat(parts, dim="sample") if len(parts) > 1 else parts[0]
    order = np.argsort(np.asarray(campaign["run_id"].values, dtype=str), kind="stable")
    campaign = campaign.isel(sample=order).drop_vars("sample", errors="ignore")
    ys, xs = ((np.arange(n) + 0.5) * grid.spacing for n in grid.size)
    campaign = campaign.assign_coords(sample=np.arange(campaign.sizes["sample"]), y=ys, x=xs)
    campaign.attrs.update(
        title="campaign ingested from per-run simulation files", generator="surrogate ingest"
    )
    for name, (units, long_name) in ATTRIBUTES.items():
        if name in campaign.variables:
            campaign[name].attrs.update(units=units, long_name=long_name)
    write_campaign(campaign, out, overwrite=True)
    return list(runs), duplicates


def _write_report(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["file", "status", "reason"])
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: r["file"]))
