"""LightningCLI for fit/validate/test/predict: run folders, defaults, input checks."""

from __future__ import annotations

import contextlib
import io
import logging
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from data.errors import InputError
from train.inputs import load_checkpoint

# --ckpt_path values that Lightning resolves itself rather than reading a file
CKPT_PATH_KEYWORDS = ("best", "last", "hpc", "registry")

# Lightning's lines that say nothing about this run: hardware it did not find, adverts
QUIET_LOG_PREFIXES = (
    "\nDetected KeyboardInterrupt",  # said once, by ``surrogate``, with exit status 130
    "Seed set to",  # the seed is in the run's config.yaml
    "GPU available",
    "TPU available",
    "HPU available",
    "\N{ELECTRIC LIGHT BULB} Tip:",
    "Loading `train_dataloader` to estimate",
)
# ... and its warnings that are harmless here: the campaign is served from memory (workers
# would not help), epochs of a small campaign are shorter than the logging interval, a
# deprecation inside Lightning itself, and a checkpoint folder we resume or --overwrite
QUIET_WARNINGS = (
    r".*does not have many workers",
    r"The number of training batches \(\d+\) is smaller than the logging interval",
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    r"Checkpoint directory .* exists and is not empty",
)
LIGHTNING_LOGGERS = (
    "lightning.fabric.utilities.seed",
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
)


class _DropMessages(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(QUIET_LOG_PREFIXES)


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Run Lightning the way the other commands run: progress and results on the terminal,
    not its known noise (other warnings and messages still show), and Ctrl-C ending in
    :class:`KeyboardInterrupt` (exit 130 from ``main``) rather than the ``sys.exit(1)`` with
    which Lightning ends a run it shut down after an interrupt. Restored on exit."""
    drop = _DropMessages()
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    interrupted: list[bool] = []
    previous = signal.getsignal(signal.SIGINT)
    main_thread = threading.current_thread() is threading.main_thread()

    def on_interrupt(signum, frame):
        interrupted.append(True)
        raise KeyboardInterrupt

    with warnings.catch_warnings():
        for pattern in QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        for logger in loggers:
            logger.addFilter(drop)
        if main_thread and callable(previous):  # not where Ctrl-C is ignored (SIG_IGN)
            signal.signal(signal.SIGINT, on_interrupt)
        try:
            yield
        except SystemExit:
            if interrupted:
                raise KeyboardInterrupt from None
            raise
        finally:
            for logger in loggers:
                logger.removeFilter(drop)
            if main_thread:
                signal.signal(signal.SIGINT, previous)


def _atomic_checkpoint_io() -> type:
    from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

    from data.atomic import atomic_path

    class AtomicCheckpointIO(TorchCheckpointIO):
        """Checkpoints written to a temporary name and renamed: a run killed while saving
        keeps its previous ``last.ckpt``, the resume point, whole."""

        def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
            with atomic_path(path) as tmp:
                super().save_checkpoint(checkpoint, tmp, storage_options)

    return AtomicCheckpointIO


def _lightning_cli() -> Any:
    """The LightningCLI subclass; imported lazily so ``simulate`` starts fast."""
    from jsonargparse import ActionYesNo
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
    from lightning.pytorch.loggers import CSVLogger

    from data.datamodule import CampaignDataModule
    from surrogate.module import SurrogateModule
    from train.callbacks import RunArtifacts

    AtomicCheckpointIO = _atomic_checkpoint_io()
    from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

    class SurrogateCLI(LightningCLI):
        def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
            parser.add_argument(
                "--run_dir",
                type=str,
                default="runs/default",
                help="folder for checkpoints/, logs and the resolved config",
            )
            parser.add_argument(
                "--overwrite",
                action=ActionYesNo,
                default=False,
                help="fit only: train afresh in a --run_dir that already holds a run; its "
                "checkpoints/*.ckpt are deleted when training starts (after every input check), "
                "its version_* logs are kept and the new run logs to the next version_N. "
                "Without it, fit refuses such a folder unless --ckpt_path resumes the run",
            )
            parser.link_arguments("data.grid_shape", "model.grid_shape", apply_on="instantiate")

        def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
            self.cli_args = list(args) if isinstance(args, (list, tuple)) else []
            usage = io.StringIO()
            try:
                with warnings.catch_warnings(), contextlib.redirect_stderr(usage):
                    # main() passes sys.argv[1:] on as ``args``, which Lightning would warn about
                    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
                    super().parse_arguments(parser, args)
            except SystemExit as exc:
                if exc.code in (0, None):  # --help, --print_config
                    sys.stderr.write(usage.getvalue())
                    raise
                raise InputError(_parser_error(usage.getvalue(), args)) from None
            subcommand = self.config.get("subcommand")
            _check_inputs(self.config[subcommand] if subcommand else self.config, subcommand)

        def instantiate_classes(self) -> None:
            # building the model, data module and trainer from a parsed config runs only
            # their argument checks: what fails there is the configuration, said in one line
            from lightning.fabric.utilities.exceptions import MisconfigurationException

            try:
                super().instantiate_classes()
            except InputError:
                raise
            except (ValueError, TypeError, MisconfigurationException) as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                configs = config_files(self.cli_args)
                where = f" (config {', '.join(map(str, configs))})" if configs else ""
                raise InputError(f"invalid configuration: {first}{where}") from None

        def before_fit(self) -> None:
            if self._get(self.config, "overwrite"):
                remove_checkpoints(Path(self._get(self.config, "run_dir")))

        def instantiate_trainer(self, **kwargs: Any) -> Any:
            run_dir = Path(self._get(self.config, "run_dir"))
            trainer_config = self._get(self.config_init, "trainer", default={})
            # a logger the user set (an instance, or false for none) is kept; not set (None)
            # or true: a CSVLogger in the run folder. The default root is the run folder too,
            # so that without a logger trainer.log_dir, where the run files go, is still there
            if trainer_config.get("logger") in (None, True):
                kwargs["logger"] = CSVLogger(save_dir=str(run_dir), name="")
            if trainer_config.get("default_root_dir") is None:
                kwargs["default_root_dir"] = str(run_dir)
            trainer = super().instantiate_trainer(**kwargs)
            # checkpoints go through the atomic writer unless the user chose another
            if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
                trainer.strategy.checkpoint_io = AtomicCheckpointIO()
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
        # the summary of a network this small is one number, and its FLOPs column reads 0
        "enable_model_summary": False,
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


def _parser_error(text: str, args: Sequence[str]) -> str:
    """jsonargparse's last ``error:`` line (after its usage dump), naming the config files."""
    lines = [line.strip() for line in text.splitlines()]
    starts = [i for i, line in enumerate(lines) if line.startswith("error:")]
    # the message may go on over the next lines (e.g. which type a value should have)
    tail = " ".join(line for line in lines[starts[-1] :] if line) if starts else ""
    message = tail.removeprefix("error:").strip() or "invalid arguments"
    configs = config_files(args)
    where = f" (config {', '.join(map(str, configs))})" if configs else ""
    return f"{message}{where}; 'surrogate {args[0] if args else 'fit'} --help' lists the options"


def config_files(args: Sequence[str]) -> list[Path]:
    """The files given with ``--config``, in order."""
    files = []
    for i, arg in enumerate(args):
        if arg in ("--config", "-c") and i + 1 < len(args):
            files.append(Path(args[i + 1]))
        elif arg.startswith("--config="):
            files.append(Path(arg.split("=", 1)[1]))
    return files


def check_config_files(args: Sequence[str]) -> None:
    """Each ``--config`` file exists and is a YAML mapping; a one-line error names it otherwise."""
    import yaml

    for path in config_files(args):
        if not path.is_file():
            raise InputError(f"{path}: config file not found")
        try:
            content = yaml.safe_load(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise InputError(f"{path}: not a text file; expected a YAML config") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}" if mark is not None else ""
            raise InputError(f"{path}: not valid YAML{at}; expected a YAML config") from None
        if content is not None and not isinstance(content, dict):
            raise InputError(
                f"{path}: expected a YAML mapping (key: value), got {type(content).__name__}"
            )


def _check_inputs(config: Any, subcommand: str | None = None) -> None:
    """Raise :class:`InputError` for a missing or damaged campaign or ``--ckpt_path`` file,
    a checkpoint that does not fit the campaign, or a fit that would replace another run.

    Runs right after parsing, before Lightning logs anything: LightningCLI then reads
    ``--ckpt_path`` with ``torch.load`` and the ``grid_shape`` link reads the campaign with
    plain h5py, and both would fail with a traceback on a foreign or damaged file.
    """
    from data.atomic import check_folder
    from data.campaign import open_campaign
    from data.datamodule import check_split_sizes, split_indices
    from data.errors import CampaignError

    path = Path(config.get("data.path"))
    grid = None
    if path.exists():
        with open_campaign(path) as ds:
            grid, n = (ds.sizes["y"], ds.sizes["x"]), ds.sizes["sample"]
        # the split the data module will draw (a resumed one records the same sizes)
        fractions = tuple(config.get("data.fractions"))
        splits = split_indices(n, fractions, config.get("data.split_seed"))
        check_split_sizes(splits, path, fractions, subcommand)
    elif config.get("data.simulate_samples") is None:
        raise CampaignError(
            f"{path}: campaign file not found (give an existing file, or set "
            "--data.simulate_samples to generate one)"
        )
    ckpt_path = config.get("ckpt_path")
    run_dir = Path(config.get("run_dir"))
    check_folder(run_dir, create=True, output=Path(f"--run_dir {run_dir}"))
    if subcommand == "fit":
        _check_run_dir(Path(config.get("run_dir")), ckpt_path, bool(config.get("overwrite")))
    if ckpt_path is None:
        return
    if ckpt_path in CKPT_PATH_KEYWORDS:
        # resolved here, to the file Lightning would pick, so that it goes through the same
        # safe reader as a path: Lightning's own lookup loads with torch's default
        # weights_only, which ran pickled code before torch 2.6
        ckpt_path = str(keyword_checkpoint(ckpt_path, Path(config.get("run_dir"))))
        config["ckpt_path"] = ckpt_path
    # predict serves every sample of the campaign: the recorded split is not used there
    _check_checkpoint(Path(ckpt_path), path, grid, split=subcommand != "predict")
    if subcommand == "fit":
        _check_epochs_left(Path(ckpt_path), config.get("trainer.max_epochs"))
    if "weights_only" in config:
        config["weights_only"] = True  # and Lightning reads it with weights_only=True too


def _check_checkpoint(
    ckpt_path: Path, data: Path, grid: tuple[int, int] | None, split: bool = True
) -> None:
    """The checkpoint loads safely; when the campaign exists, it has the model's grid and,
    where the split is used (``split``), is the campaign the checkpoint's split was drawn
    from: the data module restores that split with the checkpoint."""
    from data.campaign import check_split_campaign
    from train.inputs import check_grid

    model, _, fingerprint = load_checkpoint(ckpt_path)
    if grid is not None:
        check_grid(model, grid, data, ckpt_path)
        if split:
            check_split_campaign(fingerprint, data, f"checkpoint {ckpt_path}")


def _check_run_dir(run_dir: Path, ckpt_path: str | None, overwrite: bool) -> None:
    """``fit`` into a folder that already holds a run resumes it or says so with --overwrite;
    otherwise its last.ckpt, the resume point, would be replaced without a word."""
    if overwrite and ckpt_path is not None:
        raise InputError(
            f"--overwrite with --ckpt_path {ckpt_path}: choose one (resuming keeps the "
            f"checkpoints in {run_dir / 'checkpoints'}, --overwrite deletes them)"
        )
    held = sorted((run_dir / "checkpoints").glob("*.ckpt")) + sorted(run_dir.glob("version_*"))
    if held and ckpt_path is None and not overwrite:
        names = ", ".join(str(p.relative_to(run_dir)) for p in held[:3])
        raise InputError(
            f"--run_dir {run_dir}: already holds a run ({names}{', ...' if held[3:] else ''}); "
            "resume it with --ckpt_path last, train afresh there with --overwrite (deletes its "
            "checkpoints), or give another --run_dir"
        )


def _check_epochs_left(ckpt_path: Path, max_epochs: int | None) -> None:
    """Resuming a checkpoint that has already trained ``max_epochs`` epochs would do nothing."""
    from surrogate.checkpoint import read_checkpoint

    if max_epochs is None or max_epochs < 0:
        return
    ckpt = read_checkpoint(ckpt_path)
    progress = ckpt.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {})
    done = progress.get("current", {}).get("processed", int(ckpt.get("epoch", -1)) + 1)
    if done >= max_epochs:
        raise InputError(
            f"--trainer.max_epochs {max_epochs}: checkpoint {ckpt_path} has already trained "
            f"{done} epochs, so resuming it would train none; give a larger --trainer.max_epochs"
        )


def remove_checkpoints(run_dir: Path) -> None:
    """Delete the ``*.ckpt`` files of ``run_dir/checkpoints`` (a fit there with --overwrite)."""
    for path in (run_dir / "checkpoints").glob("*.ckpt"):
        path.unlink()


def keyword_checkpoint(keyword: str, run_dir: Path) -> Path:
    """The checkpoint file ``--ckpt_path last`` or ``best`` names in ``run_dir/checkpoints``."""
    from data.errors import InputError

    folder = run_dir / "checkpoints"
    if keyword == "last":
        found = [folder / "last.ckpt"] if (folder / "last.ckpt").is_file() else []
    elif keyword == "best":
        found = sorted(folder.glob("best-*.ckpt"))
    else:
        raise InputError(
            f"--ckpt_path {keyword}: not supported here; give the path of a checkpoint file"
        )
    if len(found) != 1:
        what = f"{len(found)} files ({', '.join(p.name for p in found)})" if found else "none"
        name = "last.ckpt" if keyword == "last" else "best-*.ckpt"
        raise InputError(
            f"--ckpt_path {keyword}: expected one {name} in {folder}, found {what}; give the "
            "path of a checkpoint file"
        )
    return found[0]


def run_lightning(args: Sequence[str], run: bool = True) -> Any:
    """Run a LightningCLI subcommand (``fit``, ``test``, ...) with ``args``."""
    check_config_files(args)
    with quiet_lightning():
        return _lightning_cli()(args, run=run)
