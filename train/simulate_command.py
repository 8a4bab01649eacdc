"""``surrogate simulate``: a campaign from the reduced-order physics model, streamed to netCDF."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

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
    parser.add_argument(
        "--out", type=Path, required=True, help="output netCDF file (its folder is created)"
    )
    parser.add_argument("--chunk-size", type=positive_int, default=500, help="samples per block")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def simulate_command(args: Sequence[str]) -> int:
    """``surrogate simulate``: stream a simulated campaign to ``--out``."""
    from data.atomic import check_folder
    from data.campaign import simulate_to_file

    opts = simulate_parser().parse_args(args)
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
