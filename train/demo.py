"""``surrogate demo``: simulated campaign -> trained surrogate -> test metrics and plots."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

from data.errors import InputError
from explain.evaluation import table as keys
from explain.references import REFERENCES
from train.inputs import OneLineParser, bounded_int, positive_int
from train.simulate_command import MAX_SIZE

NULL_REFERENCES = tuple(REFERENCES)

# The demo is configs/demo.yaml with the campaign, run folder and size given on the command line.
DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def demo_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="surrogate demo",
        description="End to end on a small simulated campaign: simulate, train, test, explain, "
        "plot.",
    )
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder")
    parser.add_argument("--samples", type=positive_int, default=3000, help="campaign size")
    parser.add_argument("--size", type=bounded_int(8, MAX_SIZE), default=64, help="patch size N")
    parser.add_argument(
        "--epochs", type=positive_int, default=None, help="training epochs (default: the config's)"
    )
    parser.add_argument("--seed", type=int, default=0, help="campaign and training seed")
    parser.add_argument(
        "--plot-samples", type=positive_int, default=4, help="held-out designs to plot (default 4)"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="redo the demo in an --out that is not empty: its campaign is reused when it has "
        "these --samples, --size and --seed (else simulated again), its run's checkpoints are "
        "deleted, and the new run logs to the next run/version_N",
    )
    return parser


def check_out(out: Path, overwrite: bool) -> None:
    """``--out`` is a folder, new or empty, unless ``--overwrite`` redoes the demo there."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(
            f"--out {out}: not empty (a previous demo?); pass --overwrite to redo the demo there "
            "(its campaign is reused if it matches --samples/--size/--seed), or give another --out"
        )


def prepare_campaign(path: Path, samples: int, size: int, seed: int) -> str:
    """Simulate the demo's campaign at ``path``, or reuse the one there if it was simulated
    with these settings; returns how it was done, for the terminal."""
    from data.campaign import open_campaign, simulate_to_file
    from data.errors import CampaignError

    what = f"{samples} samples of {size}x{size}, seed {seed}"
    if path.exists():
        try:
            with open_campaign(path) as ds:
                found = (ds.sizes["sample"], ds.sizes["y"], ds.sizes["x"], ds.attrs.get("seed"))
        except CampaignError:
            found = None
        if found is not None and tuple(int(v) for v in found) == (samples, size, size, seed):
            return f"reusing {path} ({what})"
    path.parent.mkdir(parents=True, exist_ok=True)
    simulate_to_file(path, samples, size=size, seed=seed, overwrite=True)
    return f"simulated {path} ({what})"


def demo_command(args: Sequence[str]) -> int:
    """Run the demo; prints where everything went and the held-out test R^2."""
    from torch import nn

    from explain.api import default_methods
    from explain.layers import default_layer
    from surrogate.checkpoint import load_model
    from train.evaluate_command import evaluate_designs
    from train.explain_command import explain_designs
    from train.lightning import quiet_lightning, remove_checkpoints, run_lightning
    from train.review_command import review_designs

    opts = demo_parser().parse_args(args)
    start = time.perf_counter()
    if not DEMO_CONFIG.is_file():
        raise InputError(f"{DEMO_CONFIG}: demo config not found (run the demo from a clone)")
    check_out(opts.out, opts.overwrite)
    campaign = opts.out / "campaign.nc"
    print("[1/6] campaign")
    print(prepare_campaign(campaign, opts.samples, opts.size, opts.seed))
    # run=False builds the CLI without subcommands, so no leading "fit"
    cli_args = [
        "--config",
        str(DEMO_CONFIG),
        "--run_dir",
        str(opts.out / "run"),
        "--seed_everything",
        str(opts.seed),
        "--data.path",
        str(campaign),
        "--data.size",
        str(opts.size),
        "--data.simulate_samples",
        str(opts.samples),
    ]
    if opts.epochs is not None:
        cli_args += ["--trainer.max_epochs", str(opts.epochs)]
    print("[2/6] training the surrogate")
    remove_checkpoints(opts.out / "run")  # a previous demo's: one best-*.ckpt after this one
    with quiet_lightning():
        cli = run_lightning(cli_args, run=False)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        best = Path(cli.trainer.checkpoint_callback.best_model_path)
        print("[3/6] testing the best checkpoint on the held-out split")
        cli.trainer.test(
            cli.model, datamodule=cli.datamodule, ckpt_path=str(best), verbose=False,
            weights_only=True,
        )  # fmt: skip
    log_dir = Path(cli.trainer.log_dir)
    metrics = json.loads((log_dir / "test_metrics.json").read_text())
    # CAM needs the explained layer to feed a pooled linear head (the CNN's last map on a
    # grid large enough); elsewhere Grad-CAM stands in
    model = load_model(best)
    shape = (opts.size, opts.size)
    methods = [*default_methods(model, shape, default_layer(model, shape)), "integrated-gradients"]
    print(f"[4/6] explaining the held-out designs ({', '.join(methods)})")
    maps, figures = opts.out / "explain" / "maps.nc", opts.out / "explain" / "plots"
    maps.parent.mkdir(parents=True, exist_ok=True)
    explain_designs(
        best, campaign, maps, methods=methods, samples="test", plots=figures,
        plot_samples=opts.plot_samples, overwrite=True,
    )  # fmt: skip
    print("[5/6] scoring the methods on 32 held-out designs (short version of 'evaluate')")
    scores = opts.out / "evaluate"
    # guided backprop changes only how gradients pass ReLUs; without any it is the gradient
    guided = ["guided-backprop"] if any(isinstance(m, nn.ReLU) for m in model.modules()) else []
    scored = [*methods, "gradient", "gradient-x-input", *guided, *NULL_REFERENCES]
    ev, rec = evaluate_designs(
        best, campaign, scores, methods=scored, samples=32, steps=20, sanity_samples=4,
        overwrite=True, echo=False,
    )  # fmt: skip
    print("[6/6] design review of two held-out designs")
    review = opts.out / "review"
    held_out = ",".join(str(i) for i in sorted(cli.datamodule.splits["test"])[:2])
    review_designs(
        [best], campaign, review, samples=held_out, evaluation=scores, campaign=campaign,
        seed=opts.seed + 1, overwrite=True,
    )  # fmt: skip
    print(f"\nrun folder: {log_dir}")
    print(f"best checkpoint: {best}")
    print(f"plots: {log_dir / 'parity.png'}, {log_dir / 'residuals.png'}, {figures}/")
    print(f"attribution maps: {maps}")
    print(f"method scores and recommendation: {scores / 'scores.md'}")
    print(f"design review: {review / 'review.pdf'} (and review.md/.json, regions.csv)")
    print(
        f"test R2 = {metrics['test/r2']:.4f}   RMSE = {metrics['test/rmse']:.4f} U_e/delta   "
        f"({metrics['test/samples']} held-out samples, {time.perf_counter() - start:.0f} s)"
    )
    print(agreement_line(ev, rec))
    return 0


def agreement_line(ev, rec) -> str:
    """How far the recommended method's maps agree with the exact contribution."""
    if rec.candidate is None:
        return "recommended method: none (see scores.md for why)"
    name = rec.method or f"none firmly ({rec.designs} designs); leading candidate {rec.candidate}"
    wins = f", winning {rec.wins.get(rec.candidate, 0.0):.0%} of bootstrap resamples"
    row = ev.table[rec.candidate]
    if keys.GT_SPEARMAN_INPUT not in row:
        return f"recommended method: {name}{wins} (no ground truth in this campaign)"
    kept = ev.samples - int(row[keys.GT_EXCLUDED])
    return (
        f"recommended method: {name}{wins}; its maps agree with the exact contribution at "
        f"Spearman {row[keys.GT_SPEARMAN_INPUT]:.2f} (mean over {kept} held-out designs)"
    )
