"""Time pytorch-grad-cam on the benchmark's model and batch, in its own environment.

pytorch-grad-cam needs torchvision, which pins a different torch than the project's test
environment, so ``bench_explain.py`` runs this script with that environment's interpreter:

    python benchmarks/pgc_worker.py WEIGHTS.pt BATCH.npy REPEATS

It times a plain forward pass and GradCAM + HiResCAM + LayerCAM on the same batch (one
pytorch-grad-cam object per method, as the library is used) and prints one JSON line.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from surrogate import PhysicalSurrogate, RoughnessCNN


def main() -> None:
    from pytorch_grad_cam import GradCAM, HiResCAM, LayerCAM

    weights, batch, repeats = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    payload = torch.load(weights, weights_only=True)
    net = RoughnessCNN(**payload["network"])
    model = PhysicalSurrogate(net)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    x = torch.from_numpy(np.load(batch))
    layer = model.network.features
    # regression target: the raw output of each sample
    targets = [lambda out: out for _ in range(len(x))]

    def forward() -> None:
        with torch.no_grad():
            model(x)

    def all_cams() -> None:
        # the library's documented use: one object per method, hooks released on exit
        for cls in (GradCAM, HiResCAM, LayerCAM):
            with cls(model=model, target_layers=[layer]) as cam:
                cam(input_tensor=x, targets=targets)

    times: dict[str, list[float]] = {"forward": [], "pytorch-grad-cam": []}
    for fn in (forward, all_cams):  # warm-up
        fn()
    for _ in range(repeats):
        for name, fn in (("forward", forward), ("pytorch-grad-cam", all_cams)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    print(
        json.dumps(
            {
                "torch": torch.__version__,
                "median_s": {k: statistics.median(v) for k, v in times.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
