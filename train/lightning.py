"""LightningCLI for fit/validate/test/predict: run folders, defaults, input checks."""

from __future__ import annotations

import contextlib
import io
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data.errors import InputError
from train.inputs import load_checkpoint

# --ckpt_path values that Lightning resolves itself rather than reading a file
CKPT_PATH_KEYWORDS = ("best", "last", "hpc", "registry")


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


def _check_inputs(config: Any) -> None:
    """Raise :class:`InputError` for a missing or damaged campaign or ``--ckpt_path`` file.

    Runs right after parsing, before Lightning logs anything: LightningCLI then reads
    ``--ckpt_path`` with ``torch.load`` and the ``grid_shape`` link reads the campaign with
    plain h5py, and both would fail with a traceback on a foreign or damaged file.
    """
    from data.campaign import open_campaign
    from data.errors import CampaignError

    path = Path(config.get("data.path"))
    if path.exists():
        open_campaign(path).close()
    elif config.get("data.simulate_samples") is None:
        raise CampaignError(
            f"{path}: campaign file not found (give an existing file, or set "
            "--data.simulate_samples to generate one)"
        )
    ckpt_path = config.get("ckpt_path")
    if ckpt_path is None:
        return
    if ckpt_path in CKPT_PATH_KEYWORDS:
        # resolved here, to the file Lightning would pick, so that it goes through the same
        # safe reader as a path: Lightning's own lookup loads with torch's default
        # weights_only, which ran pickled code before torch 2.6
        ckpt_path = str(keyword_checkpoint(ckpt_path, Path(config.get("run_dir"))))
        config["ckpt_path"] = ckpt_path
    load_checkpoint(Path(ckpt_path))
    if "weights_only" in config:
        config["weights_only"] = True  # and Lightning reads it with weights_only=True too


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
    return _lightning_cli()(args, run=run)
