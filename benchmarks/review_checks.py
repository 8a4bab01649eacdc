"""Does the design review tell the truth? Its what-ifs against the physics, its interval's
coverage, its domain check and its cost, on held-out designs of an independent campaign.

    python benchmarks/review_checks.py --checkpoint runs/default/checkpoints/best-*.ckpt \\
        --campaign campaigns/default-10k-64.nc --heldout campaigns/heldout-1500-s1.nc \\
        --out benchmarks/results/review_checks.json

1. What-ifs: for every method, on ``--designs`` held-out designs, the top region that raises
   the prediction (rank order of :func:`explain.regions.find_regions` among ``sign = +1``) is
   smoothed to the wall with the review's taper; the surrogate's predicted change against the
   reduced-order model's re-simulated change (R^2, sign agreement), and how often smoothing
   it lowers the *true* vorticity more than smoothing a random region of the same shape.
2. Interval: coverage of the split-conformal interval (calibrated on the checkpoint's
   validation split) over every held-out design.
3. Domain: the share of held-out designs the domain check passes.
4. Cost: ``surrogate review`` of 1 and of 100 designs, wall time of the whole command.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def r2(predicted: np.ndarray, true: np.ndarray) -> float:
    return float(1 - np.sum((predicted - true) ** 2) / np.sum((true - true.mean()) ** 2))


def what_if_scores(model, heights, ys, xs, physics, methods, seed: int) -> dict:
    """Per method: predicted vs re-simulated change of smoothing its top raising region."""
    from explain.api import Explainer
    from explain.catalogue import METHODS
    from explain.regions import find_regions
    from explain.whatif import predict, random_region_like, smooth_region

    shape = heights.shape[1:]
    truth_before = physics.evaluate(heights).max_vorticity
    predicted_before = predict(model, heights)
    out = {}
    for method in methods:
        start = time.perf_counter()
        explainer = Explainer(model, shape, methods=[method], interpolation=["none", "bilinear"])
        mode = 0 if METHODS[method].resolution == "input" else 1
        maps = np.concatenate(
            [ds["attribution"].values[:, 0, mode] for ds in explainer.batches(heights, 100)]
        )
        rng = np.random.default_rng(seed)
        edited, random_edited, kept = [], [], []
        for i, (h, a) in enumerate(zip(heights, maps, strict=True)):
            raising = [r for r in find_regions(a, h, ys, xs, max_regions=10) if r.sign > 0]
            if not raising:
                continue
            top = raising[0].mask
            kept.append(i)
            edited.append(smooth_region(h, top, "wall"))
            random_edited.append(smooth_region(h, random_region_like(top, rng, avoid=top), "wall"))
        if not kept:
            out[method] = {"designs": 0}
            continue
        kept = np.asarray(kept)
        edited, random_edited = np.stack(edited), np.stack(random_edited)
        predicted = predict(model, edited) - predicted_before[kept]
        true = physics.evaluate(edited).max_vorticity - truth_before[kept]
        true_random = physics.evaluate(random_edited).max_vorticity - truth_before[kept]
        out[method] = {
            "designs": len(kept),
            "designs_without_a_raising_region": int(len(heights) - len(kept)),
            "r2_predicted_vs_true_change": r2(predicted, true),
            "sign_agreement": float(np.mean(np.sign(predicted) == np.sign(true))),
            "true_drop_beats_random": float(np.mean(true < true_random)),
            "mean_true_change": float(true.mean()),
            "mean_true_change_random": float(true_random.mean()),
            "seconds": round(time.perf_counter() - start, 1),
        }
        print(f"  {method:<22} " + "  ".join(
            f"{k} {v:.3f}" for k, v in out[method].items() if isinstance(v, float)
        ))  # fmt: skip
    return out


def review_cost(checkpoint: Path, campaign: Path, heldout: Path) -> dict:
    """Wall time of ``surrogate review`` of 1 and of 100 designs (the whole command)."""
    out = {}
    for n in (1, 100):
        with tempfile.TemporaryDirectory() as folder:
            args = [sys.executable, "-c", "from train.cli import console_main; console_main()",
                    "review", "--checkpoint", str(checkpoint), "--design", str(heldout),
                    "--campaign", str(campaign), "--samples", f"0:{n}",
                    "--out", str(Path(folder) / "review")]  # fmt: skip
            start = time.perf_counter()
            proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
            seconds = time.perf_counter() - start
            assert proc.returncode == 0, proc.stderr[-2000:]
            pages = (Path(folder) / "review" / "review.pdf").read_bytes().count(b"/Type /Page\n")
        out[f"{n}_designs_seconds"] = round(seconds, 1)
        print(f"  review of {n} design(s): {seconds:.1f} s")
        del pages
    return out


def main() -> int:
    from data.campaign import open_campaign
    from explain.api import every_method
    from surrogate.validity import in_domain, penultimate_features
    from train.explain_command import campaign_physics
    from train.inputs import load_checkpoint
    from train.review import Ensemble, calibrate, fit_domain, spacing

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--campaign", type=Path, required=True, help="the training campaign")
    parser.add_argument("--heldout", type=Path, required=True, help="an independent campaign")
    parser.add_argument("--designs", type=int, default=300, help="designs of the what-if check")
    parser.add_argument("--methods", nargs="*", help="default: every method that applies")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-cost", action="store_true", help="skip the command timings")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/review_checks.json")
    opts = parser.parse_args()

    model, splits, _ = load_checkpoint(opts.checkpoint)
    ensemble = Ensemble([model]).eval()
    result: dict = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "checkpoint": str(opts.checkpoint),
    }
    with open_campaign(opts.campaign, check_values=False) as training:
        calibration = calibrate(ensemble, training, splits, 0.9)
        domain = fit_domain(model, training, splits, opts.seed)
    with open_campaign(opts.heldout) as held:
        heights = held["roughness"].values.astype(np.float64)
        truth = held["max_vorticity"].values.astype(np.float64)
        ys, xs = held["y"].values, held["x"].values
        physics = campaign_physics(held)
        dy, dx = spacing(held)
    from explain.whatif import predict

    predicted = predict(ensemble, heights)
    covered = np.abs(predicted - truth) <= calibration.halfwidth
    result["interval"] = {
        "level": 0.9, "halfwidth": calibration.halfwidth,
        "calibration_samples": calibration.calibration_samples,
        "heldout_designs": len(truth), "coverage": float(covered.mean()),
    }  # fmt: skip
    print(f"interval: half-width {calibration.halfwidth:.5f}, coverage {covered.mean():.4f} "
          f"over {len(truth)} held-out designs")  # fmt: skip
    features = penultimate_features(model, heights[:, None])
    findings = domain.check(heights, dy, dx, features)
    passed = np.array([in_domain(f) for f in findings])
    fired: dict[str, int] = {}
    for f in findings:
        for finding in f:
            if not finding.passed:
                fired[finding.check] = fired.get(finding.check, 0) + 1
    result["domain"] = {"pass_share": float(passed.mean()), "checks_fired": fired}
    print(f"domain: {passed.mean():.4f} of held-out designs pass; fired {fired}")
    methods = opts.methods or list(every_method(model, heights.shape[1:]))
    n = min(opts.designs, len(heights))
    print(f"what-ifs on {n} held-out designs, top raising region smoothed to the wall:")
    result["what_ifs"] = what_if_scores(model, heights[:n], ys, xs, physics, methods, opts.seed)
    if not opts.no_cost:
        result["cost"] = review_cost(opts.checkpoint, opts.campaign, opts.heldout)
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {opts.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
