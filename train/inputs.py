"""Argument types and the input checks shared by every command, each written once.

A command that reads a checkpoint and a campaign opens both through :func:`open_inputs`:
the checkpoint safely (``weights_only=True``), its recorded split, the campaign validated
against the schema, and the campaign's grid checked against the one the model was trained
on. Outputs are checked with :func:`data.atomic.check_outputs` before any work.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.campaign import check_samples, check_split_campaign
from data.errors import InputError

SPLITS = ("train", "val", "test")


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are :class:`InputError`: one line from ``main``, exit 2,
    instead of argparse's usage dump (``--help`` still shows the usage)."""

    def error(self, message: str):  # type: ignore[override]
        raise InputError(f"{message}; '{self.prog} --help' lists the options")


def bounded_int(low: int, high: int | None = None):
    """argparse type: an integer in ``[low, high]``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"between {low} and {high}"
            raise argparse.ArgumentTypeError(f"expected an integer {bounds}, got {text}")
        return value

    return parse


def options_parser(
    prog: str, description: str, epilog: str | None = None
) -> argparse.ArgumentParser:
    """A subcommand's parser whose options, when not given, are left out of the result.

    The command then calls its typed function with only the given options, so every
    default is stated once, in that function's signature (the help text repeats it).
    The checkpoint option every such command takes is added here.
    """
    parser = OneLineParser(
        prog=prog, description=description, epilog=epilog, argument_default=argparse.SUPPRESS
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="a 'surrogate fit' .ckpt")
    return parser


positive_int = bounded_int(1)  # argparse type: an integer >= 1


def split_names(values: Sequence[str]) -> list[str]:
    """``["cam,hirescam", "layercam"]`` -> ``["cam", "hirescam", "layercam"]``."""
    return [v for value in values for v in value.split(",") if v]


def parse_samples(
    text: str, total: int, splits: dict[str, list[int]] | None = None, flag: str = "--samples"
) -> np.ndarray:
    """Sorted sample indices from ``START:STOP``, ``N`` (the first N), ``i,j,k``, ``all``, or
    ``train``/``val``/``test`` (the split recorded in the checkpoint); errors name ``flag``."""
    splits = splits or {}
    try:
        if text == "all":
            ids = np.arange(total)
        elif text in SPLITS:
            if text not in splits:
                raise InputError(f"{flag} {text}: the checkpoint records no {text} split")
            ids = np.asarray(sorted(splits[text]), dtype=np.int64)
        elif ":" in text:
            lo, hi = text.split(":", 1)
            ids = np.arange(int(lo) if lo else 0, int(hi) if hi else total)
        elif "," in text:
            ids = np.unique(np.asarray([int(i) for i in text.split(",") if i], dtype=np.int64))
        else:
            ids = np.arange(int(text))
    except ValueError:
        raise InputError(
            f"{flag} {text!r}: expected START:STOP, N, i,j,k, all, train, val or test"
        ) from None
    if ids.size == 0 or ids.min() < 0 or ids.max() >= total:
        raise InputError(f"{flag} {text!r}: selects no valid samples of a campaign of {total}")
    return ids


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when present, else ``cpu``; a one-line error for anything else."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {name}: no CUDA device is available")
    if name != "cpu" and not name.startswith("cuda"):
        raise InputError(f"--device {name!r}: expected auto, cpu or cuda[:N]")
    return name


@dataclass
class Inputs:
    """A trained surrogate, the split its checkpoint records, and an open campaign."""

    model: object
    splits: dict[str, list[int]]
    campaign: object  # xarray.Dataset, read lazily
    shape: tuple[int, int]
    data: Path | None = None  # the campaign file
    checkpoint: Path | None = None
    fingerprint: str | None = None  # of the campaign the checkpoint's split indexes

    def select(self, text: str, flag: str = "--samples", limit: int | None = None) -> np.ndarray:
        """Sample indices of the campaign selected by ``text`` (see :func:`parse_samples`),
        the first ``limit`` of them where given; a recorded split only on the campaign it was
        drawn from. The selected designs are read once, to reject NaN/Inf."""
        if text in self.splits and self.data is not None:
            check_split_campaign(self.fingerprint, self.data, f"checkpoint {self.checkpoint}")
        ids = parse_samples(text, self.campaign.sizes["sample"], self.splits, flag)[:limit]
        check_samples(self.campaign, ids, str(self.data or "campaign"))  # reads only these
        return ids


def load_checkpoint(path: Path) -> tuple[object, dict[str, list[int]], str | None]:
    """The surrogate of a ``surrogate fit`` checkpoint, its recorded split, and the fingerprint
    of the campaign that split indexes (``None`` where the checkpoint predates it)."""
    from surrogate.checkpoint import (
        checkpoint_fingerprint,
        checkpoint_splits,
        model_from_checkpoint,
        read_checkpoint,
    )

    ckpt = read_checkpoint(path)
    return model_from_checkpoint(ckpt, path), checkpoint_splits(ckpt), checkpoint_fingerprint(ckpt)


def check_grid(model: object, shape: tuple[int, int], data: Path, checkpoint: Path) -> None:
    """Refuse a campaign whose grid differs from the one the model was trained on."""
    grid = tuple(int(n) for n in getattr(model, "grid_shape", (0, 0)))
    if grid != (0, 0) and tuple(shape) != grid:
        raise InputError(
            f"{data}: roughness grid is {shape[0]}x{shape[1]} but checkpoint "
            f"{checkpoint} was trained on {grid[0]}x{grid[1]}"
        )


@contextlib.contextmanager
def open_inputs(checkpoint: Path, data: Path) -> Iterator[Inputs]:
    """Open a checkpoint and a campaign, grid checked; the campaign is closed on exit.

    No design is read here: :meth:`Inputs.select` checks the designs it selects, so
    ``--samples 4`` reads four designs of a campaign of any size."""
    from data.campaign import open_campaign

    model, splits, fingerprint = load_checkpoint(checkpoint)
    campaign = open_campaign(data, check_values=False)  # designs are checked as selected
    try:
        shape = (campaign.sizes["y"], campaign.sizes["x"])
        check_grid(model, shape, data, checkpoint)
        yield Inputs(
            model, splits, campaign, shape, Path(data), Path(checkpoint), fingerprint,
        )  # fmt: skip
    finally:
        campaign.close()
