"""How much do deletion/insertion AUCs move with fewer steps? (justifies the table's step count)

Same model, designs, maps and baselines; the AUC with ``--coarse`` steps against the AUC with
``--fine`` steps (the reference's n = 100), per design and method:

    python benchmarks/steps_check.py --checkpoint runs/default-gap/checkpoints/best-epoch036.ckpt \\
        --data campaigns/default-10k-64.nc --samples 50 --coarse 25 --fine 100
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from data.campaign import open_campaign
from explain.api import Explainer
from explain.baselines import blurred, smooth_wall
from explain.evaluation import faithfulness as fa
from surrogate.checkpoint import model_from_checkpoint, read_checkpoint

METHODS = ("hirescam", "layercam", "gradient", "guided-backprop")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--coarse", type=int, default=25)
    parser.add_argument("--fine", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/steps_check.json"))
    opts = parser.parse_args()
    ckpt = read_checkpoint(opts.checkpoint)
    model = model_from_checkpoint(ckpt, opts.checkpoint)
    ids = np.asarray(sorted(ckpt["CampaignDataModule"]["split_test"]))[: opts.samples]
    with open_campaign(opts.data) as campaign:
        x = torch.from_numpy(campaign["roughness"].values[ids])[:, None]
    explainer = Explainer(model, tuple(x.shape[-2:]), METHODS, interpolation=("bilinear",))
    maps = torch.from_numpy(explainer.batch(x)["attribution"].values[:, :, 0])
    rows = {}
    for b, baseline in (("smooth-wall", smooth_wall(x)), ("blurred", blurred(x))):
        for m, method in enumerate(METHODS):
            auc = {}
            for steps in (opts.coarse, opts.fine):
                gen = torch.Generator().manual_seed(0)
                c = fa.deletion_insertion(
                    model, x, maps[:, m], baseline, steps=steps, generator=gen
                )
                auc[steps] = (c.deletion_auc.numpy(), c.insertion_auc.numpy())
            diff_del = np.abs(auc[opts.coarse][0] - auc[opts.fine][0])
            diff_ins = np.abs(auc[opts.coarse][1] - auc[opts.fine][1])
            rows[f"{b}/{method}"] = {
                "deletion_fine": float(auc[opts.fine][0].mean()),
                "deletion_coarse": float(auc[opts.coarse][0].mean()),
                "insertion_fine": float(auc[opts.fine][1].mean()),
                "insertion_coarse": float(auc[opts.coarse][1].mean()),
                "max_abs_diff": float(max(diff_del.max(), diff_ins.max())),
                "mean_abs_diff": float((diff_del.mean() + diff_ins.mean()) / 2),
            }
            r = rows[f"{b}/{method}"]
            print(
                f"{b:12s} {method:16s} del {r['deletion_fine']:.4f} -> {r['deletion_coarse']:.4f}"
                f"  ins {r['insertion_fine']:.4f} -> {r['insertion_coarse']:.4f}"
                f"  |diff| mean {r['mean_abs_diff']:.4f} max {r['max_abs_diff']:.4f}"
            )
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "checkpoint": str(opts.checkpoint),
        "samples": len(ids),
        "coarse": opts.coarse,
        "fine": opts.fine,
        "rows": rows,
    }
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {opts.out}")


if __name__ == "__main__":
    main()
