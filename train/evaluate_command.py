"""``surrogate evaluate``: which attribution method to trust for this surrogate, by the numbers."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from data.atomic import atomic_folder, check_outputs
from data.campaign import sample_ids
from data.errors import InputError
from data.physics import PhysicsParams
from data.provenance import provenance
from data.simulator import saturation_ratio
from explain.api import DEFAULT_METHODS
from explain.evaluation.road import ROAD_PERCENTAGES
from train.distributed import add_process_options, processes, remove_staging, staging_folder
from train.inputs import Inputs, open_inputs, options_parser, split_names

# every file evaluate may write, plots included: each is refused without --overwrite, and one
# an earlier run wrote that this run does not (layers.csv needs ground truth, cascade.* the
# sanity checks) is removed with --overwrite, so no stale result sits beside new scores
OUTPUTS = (
    "scores.md", "scores.csv", "scores.nc", "summary.json", "layers.csv",
    *(f"{plot}.{ext}" for plot in ("curves", "cascade", "layers") for ext in ("png", "pdf")),
)  # fmt: skip


def evaluate_parser() -> argparse.ArgumentParser:
    """Options of ``surrogate evaluate``; one not given takes :func:`evaluate_designs`'s default."""
    parser = options_parser(
        "surrogate evaluate",
        "Score attribution methods on held-out designs (deletion/insertion, ROAD, ground truth, "
        "sanity checks) and recommend one by the rule in docs/evaluation.md.",
    )
    parser.add_argument("--data", type=Path, required=True, help="campaign file")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--methods",
        nargs="+",
        help="methods to score (default: every method that applies to the model: all of them, "
        "without cam where the layer has no pooled linear head)",
    )
    parser.add_argument(
        "--samples", type=int, help="score the first N held-out designs (default all)"
    )
    parser.add_argument(
        "--split",
        choices=("test", "val", "train", "all"),
        help="designs to score: the checkpoint's split (default test) or the whole campaign",
    )
    parser.add_argument("--layer", help="layer of the layer methods (default: last spatial)")
    parser.add_argument("--steps", type=int, help="deletion/insertion steps (default 100)")
    parser.add_argument(
        "--random-permutations", type=int, help="random orders per design (default 10)"
    )
    parser.add_argument(
        "--random-samples", type=int, help="designs for the random reference (default all)"
    )
    parser.add_argument(
        "--sanity-samples", type=int, help="designs for the randomisation checks (default 16)"
    )
    parser.add_argument(
        "--road-percentages",
        help="cells ROAD removes, in %% (comma-separated; default 10,...,90)",
    )
    parser.add_argument(
        "--randomised-checkpoint",
        type=Path,
        help="a model trained on permuted targets (configs/randomised-targets.yaml), for the "
        "data-randomisation check",
    )
    parser.add_argument(
        "--layer-sweep",
        action=argparse.BooleanOptionalAction,
        help="with ground truth, score the layer methods at every feature layer and write "
        "layers.csv (default on)",
    )
    parser.add_argument(
        "--layer-sweep-methods",
        nargs="+",
        help="one-pass layer methods of the sweep (default cam hirescam layercam; cam is "
        "skipped where undefined)",
    )
    parser.add_argument("--batch-size", type=int, help="designs per batch (default 50)")
    parser.add_argument("--chunk", type=int, help="perturbed inputs per pass (default 1024)")
    parser.add_argument("--seed", type=int, help="seed of every random step (default 0)")
    parser.add_argument("--device", help="auto (GPU when present; default), cpu or cuda")
    add_process_options(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace earlier results")
    return parser


def _percentages(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) / 100 for v in text.split(",") if v)
    except ValueError:
        raise InputError(f"--road-percentages {text!r}: expected numbers like 10,50,90") from None
    if not values or not all(0 < v < 1 for v in values):
        raise InputError(f"--road-percentages {text!r}: each must lie between 0 and 100")
    return values


def evaluate_command(args: Sequence[str]) -> int:
    """Run ``surrogate evaluate`` from command-line arguments; returns the exit status."""
    opts = vars(evaluate_parser().parse_args(args))
    for name in ("methods", "layer_sweep_methods"):
        if name in opts:
            opts[name] = split_names(opts[name])
    if "road_percentages" in opts:
        opts["road_percentages"] = _percentages(opts["road_percentages"])
    evaluate_designs(**opts)
    return 0


def evaluate_designs(
    checkpoint: Path,
    data: Path,
    out: Path,
    *,
    methods: Sequence[str] | None = None,
    samples: int | None = None,
    split: str = "test",
    layer: str | None = None,
    steps: int = 100,
    random_permutations: int = 10,
    random_samples: int | None = None,
    sanity_samples: int = 16,
    road_percentages: Sequence[float] = ROAD_PERCENTAGES,
    randomised_checkpoint: Path | None = None,
    layer_sweep: bool = True,
    layer_sweep_methods: Sequence[str] = DEFAULT_METHODS,
    batch_size: int = 50,
    chunk: int = 1024,
    seed: int = 0,
    device: str = "auto",
    devices: int = 1,
    accelerator: str | None = None,
    num_nodes: int = 1,
    overwrite: bool = False,
    echo: bool = True,
):
    """Score ``methods`` on the ``split`` designs of a campaign and write the results to ``out``.

    Writes ``scores.md/.csv/.nc``, ``summary.json`` and the plots, and with ground truth and
    ``layer_sweep`` also ``layers.csv``; ``echo`` prints the score table. With ``devices``
    (or ``num_nodes``) above 1 the designs are shared out between processes
    (:mod:`train.distributed`) and rank 0 writes the results, the same as on one device.
    Returns the :class:`~explain.evaluation.protocol.Evaluation` and its recommendation
    (None, None on the other ranks).
    """
    from explain.evaluation.protocol import evaluate
    from explain.evaluation.recommend import decide
    from explain.evaluation.report import markdown_table, write_results
    from surrogate.checkpoint import load_model

    out = Path(out)
    outputs = [out / name for name in OUTPUTS]
    check_outputs(outputs, overwrite, new_folder=True, inputs=[checkpoint, data])
    counts = {
        "steps": steps,
        "random-permutations": random_permutations,
        "batch-size": batch_size,
        "chunk": chunk,
    }
    for flag, value in counts.items():
        if value < 1:
            raise InputError(f"--{flag} must be >= 1, got {value}")
    if samples is not None and samples < 1:
        raise InputError(f"--samples must be >= 1, got {samples}")
    randomised = load_model(randomised_checkpoint) if randomised_checkpoint else None
    with open_inputs(Path(checkpoint), Path(data)) as inputs:
        ids, designs = _designs(inputs, split, samples)
    with processes(devices, accelerator or device, num_nodes) as here:
        model = inputs.model.to(here.device)
        parts = staging_folder(out)
        start = time.perf_counter()
        ev = evaluate(
            model, designs["roughness"], methods and list(methods), truth=designs.get("truth"),
            peak_margin=designs.get("margin"), saturation=designs.get("saturation"),
            layer_sweep_methods=tuple(layer_sweep_methods) if layer_sweep else (),
            target_std=designs["target_std"], layer=layer,
            steps=steps, random_permutations=random_permutations, random_samples=random_samples,
            sanity_samples=sanity_samples, road_percentages=tuple(road_percentages),
            randomised_model=randomised, batch_size=batch_size, chunk=chunk, seed=seed,
            design_keys=ids, shard=(here.rank, here.world), progress=here.main,
            exchange=(lambda arrays: here.exchange(parts, arrays)) if here.world > 1 else None,
        )  # fmt: skip
        if not here.main:
            return None, None
        remove_staging(parts)
    seconds = time.perf_counter() - start
    rec = decide(ev)
    ev.settings.update(
        **provenance(checkpoint, data),  # checkpoint, campaign, their sha256, software_version
        split=split,
        randomised_checkpoint=str(randomised_checkpoint or ""),
        wall_seconds=round(seconds, 1),
        processes=here.world,
    )
    # the whole set is written aside and moved in at the end: a failure (a full disk) or
    # Ctrl-C part-way leaves the earlier results whole, not new files beside old ones
    with atomic_folder(out) as staging:
        write_results(ev, rec, ids, staging, designs["sample_id"])
        written = {p.name for p in staging.iterdir()}
    for stale in (p for p in outputs if p.exists() and p.name not in written):
        stale.unlink()
    if echo:
        print(markdown_table(ev, rec))
    print(f"\nresults in {out}/ ({seconds:.0f} s)")
    return ev, rec


def _designs(inputs: Inputs, split: str, samples: int | None) -> tuple[np.ndarray, dict]:
    """The selected designs' roughness, and truth and peak margin where the campaign has them.

    With ground truth and the campaign's saturation level ``omega_s``, also each design's
    ``|w(p*)| / omega_s`` (``"saturation"``), recovered from ``max_vorticity``.
    """
    ids = inputs.select(split, flag="--split", limit=samples)
    campaign = inputs.campaign
    designs = {
        "sample_id": sample_ids(campaign, ids),
        "roughness": campaign["roughness"][ids].values,
        "target_std": float(np.std(campaign["max_vorticity"].values)),
    }
    if "contribution" in campaign and "peak_margin" in campaign:
        designs["truth"] = campaign["contribution"][ids].values
        designs["margin"] = campaign["peak_margin"][ids].values
        physics = PhysicsParams.from_attrs(campaign.attrs)
        if physics is not None:
            omega_s = physics.omega_s
            designs["saturation"] = saturation_ratio(campaign["max_vorticity"][ids].values, omega_s)
        else:
            print("no saturation split: the campaign does not record the reduced-order model")
    return ids, designs
