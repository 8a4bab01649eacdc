"""``explain`` and ``evaluate`` on several devices: Lightning Fabric's launcher, designs by batch.

``--devices N`` (with ``--accelerator`` and ``--num-nodes``) starts the processes with
Lightning's own DDP launcher — the command line run again for each extra process on a machine,
or one process per task where SLURM or torchrun start them — and sets up the process group
(gloo on the CPU, nccl on GPUs). The designs are cut into the batches one process would form;
process ``rank`` of ``W`` takes batches ``rank, rank + W, ...``, so every design is handled
exactly once (no padding, unlike a ``DistributedSampler``) and in the same company as on one
device, which keeps the numbers the same bit for bit. Each process writes its part, keyed by
design, into a staging folder beside the output; after a barrier, rank 0 merges the parts
into the usual single output, written atomically, and removes the folder. The folder must be
on a file system every node sees (as the output must).

Attribution needs gradients: a process in which they are off (inference mode, ``no_grad``)
stops with an error instead of writing maps of zeros.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data.errors import InputError
from train.inputs import positive_int, resolve_device

ACCELERATORS = ("auto", "cpu", "gpu", "cuda")


def require_gradients() -> None:
    """A one-line error where autograd cannot run (maps would be zeros or fail part-way)."""
    if torch.is_inference_mode_enabled() or not torch.is_grad_enabled():
        raise InputError(
            "gradients are off in this process (torch.inference_mode or no_grad): attribution "
            "maps need them; run explain/evaluate outside those contexts"
        )


@dataclass
class Processes:
    """This process's place among the ``world`` processes of a run, and its device."""

    rank: int = 0
    world: int = 1
    device: str | torch.device = "cpu"
    fabric: Any = field(default=None, repr=False)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def batches(self, n: int, batch_size: int) -> list[int]:
        """First designs of this process's batches among ``n`` designs."""
        return list(range(0, n, batch_size))[self.rank :: self.world]

    def barrier(self) -> None:
        if self.fabric is not None:
            self.fabric.barrier()

    def part(self, folder: Path, suffix: str, rank: int | None = None) -> Path:
        """Where process ``rank`` (default this one) puts its part."""
        return folder / f"part-{self.rank if rank is None else rank}-of-{self.world}{suffix}"

    def exchange(self, folder: Path, arrays: dict[str, np.ndarray]) -> list[dict] | None:
        """Save ``arrays`` as this process's part; on rank 0 return every part (rank order)
        once all are saved, elsewhere None. Plain ``.npz`` arrays, read without pickle."""
        folder.mkdir(parents=True, exist_ok=True)
        path = self.part(folder, ".npz")
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
        self.barrier()
        if not self.main:
            return None
        parts = []
        for rank in range(self.world):
            with np.load(self.part(folder, ".npz", rank), allow_pickle=False) as data:
                parts.append({name: data[name] for name in data.files})
        return parts


def staging_folder(out: Path) -> Path:
    """The folder beside ``out`` where the processes put their parts."""
    return out.with_name(f".{out.name}.parts")


@contextmanager
def processes(
    devices: int = 1, accelerator: str = "auto", num_nodes: int = 1
) -> Iterator[Processes]:
    """Start (or join) the processes of a run; yields this one's :class:`Processes`.

    One device on one node starts nothing. Otherwise Lightning Fabric launches them (DDP);
    an error on rank 0 stops the processes it started instead of leaving them at a barrier.
    """
    if devices < 1 or num_nodes < 1:
        raise InputError(f"--devices and --num-nodes must be >= 1, got {devices}, {num_nodes}")
    require_gradients()
    if devices == 1 and num_nodes == 1:  # --device's values, and gpu
        yield Processes(device=resolve_device("cuda" if accelerator == "gpu" else accelerator))
        return
    if accelerator not in ACCELERATORS:
        raise InputError(f"--accelerator {accelerator!r}: expected one of {ACCELERATORS}")
    if accelerator in ("gpu", "cuda") and torch.cuda.device_count() < devices:
        raise InputError(
            f"--devices {devices} --accelerator {accelerator}: "
            f"{torch.cuda.device_count()} GPU(s) on this machine"
        )
    from lightning.fabric import Fabric

    fabric = Fabric(
        accelerator="cuda" if accelerator == "gpu" else accelerator,
        devices=devices,
        num_nodes=num_nodes,
        strategy="ddp",
    )
    fabric.launch()
    require_gradients()
    here = Processes(fabric.global_rank, fabric.world_size, fabric.device, fabric)
    if not here.main:  # one voice: rank 0 reports; the others keep stderr for their errors
        sys.stdout = open(os.devnull, "w")
    try:
        yield here
    except BaseException:
        for child in getattr(fabric.strategy.launcher, "procs", ()):  # rank 0's children
            child.kill()
        raise


def remove_staging(folder: Path) -> None:
    """Remove the parts once merged (rank 0)."""
    shutil.rmtree(folder, ignore_errors=True)


def add_process_options(parser: argparse.ArgumentParser) -> None:
    """``--devices``, ``--accelerator`` and ``--num-nodes`` of a command that shares designs."""
    parser.add_argument(
        "--devices",
        type=positive_int,
        help="processes per node, one per device (default 1); above 1 the designs are shared "
        "out through Lightning's DDP launcher (docs/scale-out.md)",
    )
    parser.add_argument(
        "--accelerator",
        choices=ACCELERATORS,
        help="device kind of the processes (default: --device, else auto: GPUs when present)",
    )
    parser.add_argument("--num-nodes", type=positive_int, help="machines (default 1; SLURM)")
