"""``surrogate simulate``: a campaign from the reduced-order physics model, streamed to netCDF,
or (``--per-run DIR``) written as one file per run, the way a DNS campaign leaves its runs."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from data.errors import InputError
from data.per_run import LAYOUTS
from train.inputs import OneLineParser, bounded_int, positive_int

MAX_SIZE = 1024  # cells a side; the kernel is built on an 8N-point spanwise grid


def simulate_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="surrogate simulate",
        description="Generate a campaign with the reduced-order roughness model "
        "(a model of the mechanism, not a DNS), with exact ground-truth contributions.",
    )
    parser.add_argument("--samples", type=positive_int, default=10_000, help="number of designs")
    parser.add_argument(
        "--size", type=bounded_int(8, MAX_SIZE), default=64, help="patch size N (cells a side)"
    )
    parser.add_argument(
        "--seed", type=bounded_int(0), default=0, help="seed; the same seed gives the same campaign"
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="output netCDF file (its folder is created)")
    where.add_argument(
        "--per-run",
        type=Path,
        metavar="DIR",
        help="write one file per run into DIR (created, must be empty) with the ingest "
        "mapping DIR/mapping.yaml, instead of one campaign file",
    )
    parser.add_argument(
        "--layout",
        choices=LAYOUTS,
        help="file layout of --per-run runs (default same-grid); configs/ingest/LAYOUT.yaml "
        "is its mapping for --size 64",
    )
    parser.add_argument("--chunk-size", type=positive_int, default=500, help="samples per block")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def simulate_command(args: Sequence[str]) -> int:
    """``surrogate simulate``: stream a simulated campaign to ``--out``, or one file per run to
    ``--per-run``."""
    from data.atomic import check_folder
    from data.campaign import simulate_to_file

    opts = simulate_parser().parse_args(args)
    if opts.per_run is not None:
        return _per_run(opts)
    if opts.layout is not None:
        raise InputError("--layout applies to --per-run only; '--out' writes one campaign file")
    # like fit's run folder, the campaign's folder is created (the README simulates into
    # campaigns/, which a fresh clone does not have); its nearest parent must be writable
    check_folder(opts.out.parent, create=True, output=opts.out)
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    path = simulate_to_file(
        opts.out,
        samples=opts.samples,
        size=opts.size,
        seed=opts.seed,
        chunk_size=opts.chunk_size,
        overwrite=opts.overwrite,
        progress=not opts.quiet,
    )
    print(
        f"wrote {opts.samples} samples ({opts.size}x{opts.size}) to {path} "
        f"in {time.perf_counter() - start:.1f} s"
    )
    return 0


def _per_run(opts: argparse.Namespace) -> int:
    from data.per_run import MAPPING_NAME, write_runs

    layout = opts.layout or "same-grid"
    start = time.perf_counter()
    paths = write_runs(
        opts.per_run,
        samples=opts.samples,
        size=opts.size,
        seed=opts.seed,
        layout=layout,
        chunk_size=opts.chunk_size,
        overwrite=opts.overwrite,
        progress=not opts.quiet,
    )
    print(
        f"wrote {len(paths)} {layout} run files ({opts.size}x{opts.size}) to {opts.per_run} "
        f"with their ingest mapping {opts.per_run / MAPPING_NAME} "
        f"in {time.perf_counter() - start:.1f} s"
    )
    return 0
