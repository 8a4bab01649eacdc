"""Explanation cost: all gradient maps in one pass vs a forward pass, captum, pytorch-grad-cam.

Same model (the ``configs/default.yaml`` architecture, or a checkpoint) and the same batch
for every contender; repeats are interleaved so background load hits all alike, and the
median is reported.

- ``forward``: one plain forward pass (``torch.no_grad``, eval mode) - the unit of cost;
- ``forward+grad``: a forward pass that records the graph (what any gradient method pays);
- ``ours: cam+hirescam+layercam``: one hooked forward + one ``autograd.grad`` to the layer;
- ``ours: 5 layer maps``: the same plus Grad-CAM and Grad-CAM++, still one pass;
- ``ours: all 6 gradient maps``: the same plus the input gradient (the backward pass then
  runs all the way to the input, about one more forward pass of work);
- ``captum: gradcam+hirescam``: ``LayerGradCam`` and ``LayerGradientXActivation``, one call each;
- ``pytorch-grad-cam: gradcam+hirescam+layercam``: run by ``pgc_worker.py`` in a separate
  environment (``--pgc-python``), which times its own forward pass for the ratio.

``--campaign`` additionally times ``surrogate explain`` over a whole campaign (wall time and
peak resident memory of the child process).

    python benchmarks/bench_explain.py --batch 64 --repeats 7 \\
        --pgc-python /work/venv-gradcam/bin/python \\
        --checkpoint runs/default-gap/checkpoints/best-epoch036.ckpt \\
        --campaign campaigns/default-10k-64.nc
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from explain.gradient import GRADIENT_METHODS, LAYER_METHODS, gradient_maps
from surrogate import PhysicalSurrogate, RoughnessCNN
from surrogate.architectures import network_arguments
from surrogate.checkpoint import model_from_checkpoint, read_checkpoint

DEFAULT_NETWORK = {
    "widths": (32, 64, 128, 256),
    "convs_per_stage": 2,
    "kernel_size": (3, 5),
    "head": "gap",
    "coord_channels": True,
    "dropout": 0.0,
    "stem_stride": 2,
}
LAYER = "network.features"


def build_model(checkpoint: Path | None) -> tuple[PhysicalSurrogate, dict]:
    if checkpoint is not None:
        ckpt = read_checkpoint(checkpoint)
        network = {k: ckpt["hyper_parameters"][k] for k in network_arguments("cnn")}
        return model_from_checkpoint(ckpt, checkpoint), network
    torch.manual_seed(0)
    model = PhysicalSurrogate(RoughnessCNN(**DEFAULT_NETWORK))
    model.input_norm.set_statistics(0.0, 0.05)
    model.target_norm.set_statistics(0.1, 0.04)
    return model.eval(), DEFAULT_NETWORK


def contenders(model: torch.nn.Module, x: torch.Tensor) -> dict[str, Callable[[], object]]:
    from captum.attr import LayerGradCam, LayerGradientXActivation

    layer = dict(model.named_modules())[LAYER]
    gradcam, gxa = LayerGradCam(model, layer), LayerGradientXActivation(model, layer)

    def forward() -> None:
        with torch.no_grad():
            model(x)

    x_grad = x.clone().requires_grad_(True)

    def forward_grad() -> None:
        with torch.enable_grad():
            model(x_grad)

    def captum_pair() -> None:
        gradcam.attribute(x, relu_attributions=False)
        gxa.attribute(x).sum(dim=1)

    return {
        "forward": forward,
        "forward+grad": forward_grad,
        "ours: cam+hirescam+layercam": lambda: gradient_maps(
            model, x, LAYER, ["cam", "hirescam", "layercam"]
        ),
        "ours: 5 layer maps (all but gradient)": lambda: gradient_maps(
            model, x, LAYER, LAYER_METHODS
        ),
        "ours: all 6 gradient maps": lambda: gradient_maps(model, x, LAYER, GRADIENT_METHODS),
        "captum: gradcam+hirescam": captum_pair,
    }


def time_interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    for fn in fns.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(v) for name, v in times.items()}


def run_pgc(python: str, model: torch.nn.Module, network: dict, x: torch.Tensor, repeats: int):
    with tempfile.TemporaryDirectory() as tmp:
        weights, batch = Path(tmp) / "weights.pt", Path(tmp) / "batch.npy"
        torch.save({"network": network, "state_dict": model.state_dict()}, weights)
        np.save(batch, x.numpy())
        worker = Path(__file__).with_name("pgc_worker.py")
        done = subprocess.run(
            [python, str(worker), str(weights), str(batch), str(repeats)],
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        print(f"pytorch-grad-cam worker failed:\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


# the child reports its own peak RSS: RUSAGE_CHILDREN would give the largest of all children,
# including the pytorch-grad-cam worker
CHILD = (
    "import resource, sys; from train.cli import main; rc = main(sys.argv[1:]); "
    "print('PEAK_RSS_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)"
)


def run_campaign(checkpoint: Path, campaign: Path, batch: int) -> dict:
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        out = Path(tmp) / "maps.nc"
        args = [
            "explain", "--checkpoint", str(checkpoint), "--data", str(campaign),
            "--out", str(out), "--methods", "cam", "hirescam", "layercam",
            "--interpolation", "none,bilinear", "--batch-size", str(batch),
        ]  # fmt: skip
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", CHILD, *args], check=True, capture_output=True, text=True
        )
        wall = time.perf_counter() - start
        size = out.stat().st_size
    print(done.stdout, end="")
    peak_kib = int(done.stdout.split("PEAK_RSS_KIB")[1].split()[0])
    return {
        "command": " ".join(["surrogate", *args]).replace(str(out), "maps.nc"),
        "wall_s": wall,
        "peak_rss_mib": peak_kib / 1024,
        "output_mib": size / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--pgc-python", help="interpreter of an environment with grad-cam")
    parser.add_argument("--campaign", type=Path, help="also time 'surrogate explain' on it")
    parser.add_argument("--campaign-batch", type=int, default=128)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/explain.json"))
    opts = parser.parse_args()

    model, network = build_model(opts.checkpoint)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(0.05 * rng.standard_normal((opts.batch, 1, opts.size, opts.size)))
    x = x.float()
    medians = time_interleaved(contenders(model, x), opts.repeats)
    base = medians["forward"]
    rows = {name: {"median_s": t, "x_forward": t / base} for name, t in medians.items()}
    if opts.pgc_python:
        pgc = run_pgc(opts.pgc_python, model, network, x, opts.repeats)
        if pgc is not None:
            t, own = pgc["median_s"]["pytorch-grad-cam"], pgc["median_s"]["forward"]
            rows["pytorch-grad-cam: gradcam+hirescam+layercam"] = {
                "median_s": t,
                "x_forward": t / own,
                "forward_s_in_its_env": own,
                "torch": pgc["torch"],
            }
    print(f"batch {opts.batch} x {opts.size}x{opts.size}, {torch.get_num_threads()} threads")
    for name, row in rows.items():
        print(f"  {name:<46} {row['median_s'] * 1e3:9.1f} ms  {row['x_forward']:6.2f}x forward")
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": torch.get_num_threads(),
        "torch": torch.__version__,
        "batch": opts.batch,
        "size": opts.size,
        "repeats": opts.repeats,
        "checkpoint": str(opts.checkpoint) if opts.checkpoint else "random init",
        "rows": rows,
    }
    if opts.campaign is not None:
        if opts.checkpoint is None:
            parser.error("--campaign needs --checkpoint")
        result["campaign"] = run_campaign(opts.checkpoint, opts.campaign, opts.campaign_batch)
        c = result["campaign"]
        print(
            f"  surrogate explain on {opts.campaign}: {c['wall_s']:.1f} s, "
            f"peak RSS {c['peak_rss_mib']:.0f} MiB, output {c['output_mib']:.0f} MiB"
        )
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {opts.out}")


if __name__ == "__main__":
    main()
