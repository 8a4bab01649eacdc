"""Ablation at a fixed data size: which physics-motivated choices help the surrogate?

Trains the reference architecture of ``configs/default.yaml`` and variants with one choice
removed, on the same ``n`` training samples of the learning-curve campaign, with the same
budget, and reports held-out test R^2. Shares the training path of ``learning_curve.py``.

    python benchmarks/ablation.py --n 2000 --epochs 40
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learning_curve import MODEL_ARGS, train_point

VARIANTS: dict[str, list[str]] = {
    "reference (coords, 3x5 kernel, stride-2 stem, sign flip)": MODEL_ARGS,
    "no coordinate channels": [*MODEL_ARGS, "--model.coord_channels", "false"],
    "3x3 kernel (no stretch along the flow)": [*MODEL_ARGS, "--model.kernel_size", "[3, 3]"],
    "no sign-flip augmentation": [*MODEL_ARGS, "--model.sign_flip", "false"],
    "plain CNN 16-128, full resolution, 3x3": [
        "--model.widths",
        "[16, 32, 64, 128]",
        "--model.kernel_size",
        "[3, 3]",
        "--model.stem_stride",
        "1",
        "--model.coord_channels",
        "false",
    ],
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaign", type=Path, default=Path("campaigns/lc-25k-64.nc"))
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--head", default="max")
    parser.add_argument("--variants", nargs="*", default=None, help="subset of variant names")
    parser.add_argument("--val-every", type=int, default=1, help="validate every k epochs")
    parser.add_argument("--run-root", type=Path, default=Path("runs/ablation"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ablation.json"))
    opts = parser.parse_args(argv)
    # rows already measured by an earlier invocation are kept, not retrained
    previous = json.loads(opts.out.read_text()) if opts.out.exists() else {}
    rows = previous.get("rows", [])
    commands = [previous["command"]] if previous else []
    for i, (name, args) in enumerate(VARIANTS.items()):
        if (opts.variants and name not in opts.variants) or name in {r["variant"] for r in rows}:
            continue
        row = train_point(
            opts.campaign,
            opts.n,
            opts.epochs,
            opts.head,
            opts.run_root / f"v{i}",
            model_args=args,
            val_every=opts.val_every,
        )
        row["variant"], row["val_every"] = name, opts.val_every
        rows.append(row)
        print(
            f"{name:<58} R2={row['r2']:.4f} RMSE={row['rmse']:.5f} "
            f"({row['wall_seconds'] / 60:.1f} min)",
            flush=True,
        )
        opts.out.parent.mkdir(parents=True, exist_ok=True)
        opts.out.write_text(
            json.dumps(
                {
                    "benchmark": "ablation",
                    "n": opts.n,
                    "epochs": opts.epochs,
                    "head": opts.head,
                    "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "command": " && ".join(
                        [*commands, " ".join(["python benchmarks/ablation.py", *(argv or [])])]
                    ),
                    "rows": rows,
                },
                indent=2,
            )
            + "\n"
        )
    return {"rows": rows}


if __name__ == "__main__":
    main()
