"""The ``surrogate`` command: simulate, fit/validate/test/predict (LightningCLI), demo.

Every subcommand turns bad input (:class:`data.errors.InputError`) into one line on
stderr and exit status 2, without a traceback.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from data.errors import InputError

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
# --ckpt_path values that Lightning resolves itself rather than reading a file
CKPT_PATH_KEYWORDS = ("best", "last", "hpc", "registry")

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
  demo       simulate -> train -> test -> explain -> plots, end to end, on a small campaign

'surrogate COMMAND --help' shows the options of a command.
"""


def _lightning_cli() -> Any:
    """The LightningCLI subclass; imported lazily so ``simulate`` starts fast."""
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
    from lightning.pytorch.loggers import CSVLogger

    from data.datamodule import CampaignDataModule
    from surrogate.module import SurrogateModule
    from train.callbacks import RunArtifacts

    class SurrogateCLI(LightningCLI):
        def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
            parser.add_argument(
                "--run_dir",
                type=str,
                default="runs/default",
                help="folder for checkpoints/, logs and the resolved config",
            )
            parser.link_arguments("data.grid_shape", "model.grid_shape", apply_on="instantiate")

        def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
            with warnings.catch_warnings():
                # main() passes sys.argv[1:] on as ``args``, which Lightning would warn about
                warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
                super().parse_arguments(parser, args)
            subcommand = self.config.get("subcommand")
            _check_inputs(self.config[subcommand] if subcommand else self.config)

        def instantiate_trainer(self, **kwargs: Any) -> Any:
            run_dir = Path(self._get(self.config, "run_dir"))
            kwargs.setdefault("logger", CSVLogger(save_dir=str(run_dir), name=""))
            trainer = super().instantiate_trainer(**kwargs)
            for callback in trainer.checkpoint_callbacks:
                if callback.dirpath is None:
                    callback.dirpath = str(run_dir / "checkpoints")
            trainer.callbacks.append(RunArtifacts())
            return trainer

    # Lightning's save_last only refreshes last.ckpt when a new best is saved, so "last"
    # gets its own callback that overwrites it every epoch: resume really resumes.
    best = ModelCheckpoint(
        monitor="val/r2",
        mode="max",
        save_top_k=1,
        filename="best-epoch{epoch:03d}",
        auto_insert_metric_name=False,
    )
    last = ModelCheckpoint(filename="last", save_top_k=1, enable_version_counter=False)
    defaults = {
        "callbacks": [best, last],
        "accelerator": "auto",
        "devices": 1,
        "log_every_n_steps": 20,
    }

    def build(args: Sequence[str], run: bool = True) -> Any:
        return SurrogateCLI(
            SurrogateModule,
            CampaignDataModule,
            args=list(args),
            run=run,
            trainer_defaults=defaults,
            seed_everything_default=0,
            save_config_kwargs={"overwrite": True},
        )

    return build


def _check_inputs(config: Any) -> None:
    """Raise :class:`InputError` for a missing or damaged campaign or ``--ckpt_path`` file.

    Runs right after parsing, before Lightning logs anything: LightningCLI then reads
    ``--ckpt_path`` with ``torch.load`` and the ``grid_shape`` link reads the campaign with
    plain h5py, and both would fail with a traceback on a foreign or damaged file.
    """
    from data.campaign import open_campaign
    from data.errors import CampaignError
    from surrogate.checkpoint import read_checkpoint

    path = Path(config.get("data.path"))
    if path.exists():
        open_campaign(path).close()
    elif config.get("data.simulate_samples") is None:
        raise CampaignError(
            f"{path}: campaign file not found (give an existing file, or set "
            "--data.simulate_samples to generate one)"
        )
    ckpt_path = config.get("ckpt_path")
    if ckpt_path is not None and ckpt_path not in CKPT_PATH_KEYWORDS:
        read_checkpoint(ckpt_path)


def run_lightning(args: Sequence[str], run: bool = True) -> Any:
    """Run a LightningCLI subcommand (``fit``, ``test``, ...) with ``args``."""
    return _lightning_cli()(args, run=run)


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


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "simulate": _simulate,
    "explain": _explain,
    "evaluate": _evaluate,
    "demo": _demo,
}


def main(args: Sequence[str] | None = None) -> int:
    """Entry point of ``surrogate``; returns the exit status (also used by tests)."""
    argv = list(sys.argv[1:] if args is None else args)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(OVERVIEW, end="")
        return 0 if argv else 2
    command = argv[0]
    try:
        if command in COMMANDS:
            return COMMANDS[command](argv[1:])
        if command in LIGHTNING_COMMANDS:
            run_lightning(argv)
            return 0
    except InputError as exc:
        print(f"surrogate {command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"surrogate {command}: interrupted", file=sys.stderr)
        return 130
    print(
        f"surrogate: error: unknown command {command!r}; choose from "
        f"{', '.join([*COMMANDS, *LIGHTNING_COMMANDS])}",
        file=sys.stderr,
    )
    return 2


def console_main() -> None:
    """``[project.scripts]`` target: exit with :func:`main`'s status."""
    sys.exit(main())
