"""The ``surrogate`` command: one entry point dispatching to every subcommand.

``fit``/``validate``/``test``/``predict`` go to LightningCLI (:mod:`train.lightning`); the
others are plain functions of their own modules, imported only when called so that
``surrogate simulate`` starts fast.

Every subcommand turns bad input (:class:`data.errors.InputError`) into one line on
stderr and exit status 2, without a traceback (an output refused before any work, for want
of space or permission, too); a write that fails half-way (a full disk) into one line and
status 1; Ctrl-C into status 130 with no output left half-written.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Sequence

from data.atomic import OutputError, ignore_file_size_signal
from data.errors import InputError
from train.allocator import keep_large_buffers

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")

OVERVIEW = """usage: surrogate COMMAND [options]

Surrogate models of roughness-induced vorticity, and their explanations.

commands:
  simulate   generate a campaign with the reduced-order physics model (exact ground truth)
  fit        train a surrogate (LightningCLI; e.g. --config configs/demo.yaml)
  validate   validation metrics of a checkpoint (--ckpt_path)
  test       held-out test metrics, parity plot and residuals of a checkpoint
  predict    predictions for every sample of a campaign (predictions.nc in the run folder)
  explain    attribution maps (CAM, HiResCAM, LayerCAM, ...) of a checkpoint over a campaign
  evaluate   score the attribution methods (faithfulness, ground truth, sanity) and recommend one
  ingest     per-run simulation files -> one campaign, through a YAML mapping (resumable)
  review     a design review: prediction with an interval, domain check, driving regions,
             what-ifs checked against the physics, a report (PDF, Markdown, JSON)
  demo       simulate -> train -> test -> explain -> plots, end to end, on a small campaign

'surrogate COMMAND --help' shows the options of a command.
"""


def _simulate(args: Sequence[str]) -> int:
    from train.simulate_command import simulate_command

    return simulate_command(args)


def _demo(args: Sequence[str]) -> int:
    from train.demo import demo_command

    return demo_command(args)


def _explain(args: Sequence[str]) -> int:
    from train.explain_command import explain_command

    return explain_command(args)


def _evaluate(args: Sequence[str]) -> int:
    from train.evaluate_command import evaluate_command

    return evaluate_command(args)


def _ingest(args: Sequence[str]) -> int:
    from train.ingest_command import ingest_command

    return ingest_command(args)


def _review(args: Sequence[str]) -> int:
    from train.review_command import review_command

    return review_command(args)


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "simulate": _simulate,
    "explain": _explain,
    "evaluate": _evaluate,
    "review": _review,
    "ingest": _ingest,
    "demo": _demo,
}


def _say(command: str, message: str) -> None:
    """One line on stderr, on a line of its own: a progress bar the error or the interrupt
    cut short is closed first (it would otherwise end mid-line, with the message after it)."""
    tqdm = getattr(sys.modules.get("tqdm"), "tqdm", None)
    for bar in list(getattr(tqdm, "_instances", ())):
        with contextlib.suppress(Exception):
            bar.close()
    print(f"surrogate {command}: {message}", file=sys.stderr)


def main(args: Sequence[str] | None = None) -> int:
    """Entry point of ``surrogate``; returns the exit status (also used by tests)."""
    argv = list(sys.argv[1:] if args is None else args)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(OVERVIEW, end="")
        return 0 if argv else 2
    command = argv[0]
    ignore_file_size_signal()
    keep_large_buffers()
    try:
        if command in COMMANDS:
            return COMMANDS[command](argv[1:])
        if command in LIGHTNING_COMMANDS:
            from train.lightning import run_lightning

            run_lightning(argv)
            return 0
    except OutputError as exc:
        _say(command, f"error: {exc}")
        if not exc.broken_file:  # refused up front, before any work: like bad input
            return 2
        # a write failed half-way (full disk): HDF5 cannot close such a file, and its
        # clean-up at exit would crash, so leave without it (the temporary file is gone)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
    except InputError as exc:
        _say(command, f"error: {exc}")
        return 2
    except KeyboardInterrupt:
        _say(command, "interrupted; outputs left as they were")
        return 130
    except OSError as exc:  # the environment, not the input: unreadable, unwritable, gone
        name = f"{exc.filename}: " if exc.filename else ""
        _say(command, f"error: {name}{exc.strerror or exc}")
        return 1
    print(
        f"surrogate: error: unknown command {command!r}; choose from "
        f"{', '.join([*COMMANDS, *LIGHTNING_COMMANDS])}",
        file=sys.stderr,
    )
    return 2


def console_main() -> None:
    """``[project.scripts]`` target: exit with :func:`main`'s status."""
    sys.exit(main())
