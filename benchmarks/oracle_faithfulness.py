"""Faithfulness scores of the exact contribution itself: can a perfect map win these criteria?

Scores, on one model and the designs of a synthetic campaign, the stored ground-truth
contribution as if it were a method's map, beside integrated gradients, ``|h|``, the truth's
magnitude ``|C|`` and ``|IG|``, with the functions and settings of ``surrogate evaluate``
(deletion/insertion on the smooth wall and the blurred field, ROAD by noisy linear imputation).
A criterion on which the exact physics loses to a null reference measures something other than
agreement with the physics: the numbers say which, for issue 9's error budget.

    python benchmarks/oracle_faithfulness.py --checkpoint runs/default-s0/checkpoints/best-*.ckpt \\
        --data campaigns/heldout-1500-s1.nc --samples 300
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from explain.baselines import BASELINES
from explain.evaluation.faithfulness import deletion_insertion
from explain.evaluation.groundtruth import MIN_MARGIN
from explain.evaluation.road import road
from explain.path import integrated_gradients
from surrogate import load_model


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True, help="a synthetic campaign")
    p.add_argument("--samples", type=int, default=300, help="first N designs with margin >= 5%%")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/oracle_faithfulness.json"))
    a = p.parse_args(argv)
    torch.set_grad_enabled(True)
    model = load_model(a.checkpoint).eval()
    with xr.open_dataset(a.data) as ds:
        keep = np.flatnonzero(ds.peak_margin.values >= MIN_MARGIN)[: a.samples]
        h = torch.from_numpy(ds.roughness.values[keep]).float()[:, None]
        truth = torch.from_numpy(ds.contribution.values[keep]).float()
        std = float(ds.max_vorticity.std())
    generator = torch.Generator().manual_seed(a.seed)
    scores: dict[str, dict[str, list[float]]] = {}
    start = time.perf_counter()
    for i in range(0, len(h), a.batch_size):
        x, c = h[i : i + a.batch_size], truth[i : i + a.batch_size]
        _, ig, _ = integrated_gradients(model, x)
        ig = ig.detach()
        maps = {
            "truth": c, "abs-truth": c.abs(), "integrated-gradients": ig,
            "abs-integrated-gradients": ig.abs(), "abs-height": x[:, 0].abs(),
        }  # fmt: skip
        for name, m in maps.items():
            out = scores.setdefault(name, {})
            for b in ("smooth-wall", "blurred"):
                curves = deletion_insertion(
                    model, x, m, BASELINES[b](x), steps=a.steps, generator=generator,
                    target_std=std,
                )  # fmt: skip
                out.setdefault(f"deletion_auc[{b}]", []).extend(curves.deletion_auc.tolist())
                out.setdefault(f"insertion_auc[{b}]", []).extend(curves.insertion_auc.tolist())
            r = road(model, x, m, generator=generator, scale=std)
            out.setdefault("road_morf", []).extend(r.morf_mean.tolist())
            out.setdefault("road_lerf", []).extend(r.lerf_mean.tolist())
            out.setdefault("road_combined", []).extend(r.combined.tolist())
        print(f"{i + len(x)}/{len(h)} designs, {time.perf_counter() - start:.0f} s", flush=True)
    table = {
        name: {k: float(np.mean(v)) for k, v in s.items()}
        | {
            f"ins-del[{b}]": float(
                np.mean(s[f"insertion_auc[{b}]"]) - np.mean(s[f"deletion_auc[{b}]"])
            )
            for b in ("smooth-wall", "blurred")
        }
        for name, s in scores.items()
    }
    cols = [
        "ins-del[smooth-wall]",
        "ins-del[blurred]",
        "deletion_auc[smooth-wall]",
        "road_combined",
    ]
    lines = ["| map | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    lines += [
        f"| {n} | " + " | ".join(f"{t[c]:.3f}" for c in cols) + " |" for n, t in table.items()
    ]
    result = {
        "benchmark": "oracle faithfulness",
        "checkpoint": str(a.checkpoint),
        "data": str(a.data),
        "designs": len(h),
        "steps": a.steps,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} threads={torch.get_num_threads()}",
        "command": " ".join(["python benchmarks/oracle_faithfulness.py", *(argv or sys.argv[1:])]),
        "seconds": time.perf_counter() - start,
        "scores": table,
        "markdown": "\n".join(lines),
    }
    print(result["markdown"])
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
