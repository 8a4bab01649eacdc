"""One prepared benchmark for a GPU machine: training speed options, DDP scaling, explanation
cost, batched faithfulness and the full evaluation, measured in one run.

Sections (each one's failure is recorded in the JSON and the run goes on):

- ``training``: samples/s of optimiser steps of the real :class:`SurrogateModule`
  (``training_step``: sign flip, normalisers, loss, prior, metrics) on synthetic batches,
  for the model settings of ``configs/default.yaml`` (transport) and ``configs/cnn.yaml``,
  at each ``--sizes``, as fp32, bf16-mixed (``torch.autocast``, as Lightning's
  ``--trainer.precision bf16-mixed``), ``channels_last``, both, and with ``--compile``
  ``torch.compile``; after ``--warmup`` steps (compilation included there), the median of
  ``--repeats`` blocks of ``--steps`` steps;
- ``ddp``: ``surrogate fit`` on one GPU, then on two (``--trainer.strategy ddp``), on a
  simulated campaign; wall time of the process and of the fit, train samples/s
  (skipped with fewer than 2 GPUs; ``--ddp-cpu`` runs it with gloo on the CPU to check it);
- ``explain``: all gradient maps of :class:`explain.api.Explainer` (Grad-CAM, HiResCAM,
  LayerCAM, gradient, gradient x input) as a multiple of one plain forward pass of the same
  batch (goal <= 1.2 on a GPU), with captum and pytorch-grad-cam on the same batch and layer;
- ``faithfulness``: batched deletion/insertion against the per-sample loop on the same
  designs and gradient x input maps (goal >= 10x), with their largest differences;
- ``evaluate``: :func:`explain.evaluation.protocol.evaluate` of ``--designs`` simulated
  designs (every method, ground truth, sanity checks, layer sweep), wall time.

Models are freshly initialised (normalisers set from simulated designs) unless
``--checkpoint`` is given, which then replaces them in explain, faithfulness and evaluate.

    python benchmarks/bench_gpu.py --compile                 # on the GPU machine
    nice -n 19 python benchmarks/bench_gpu.py --tiny \\
        --out benchmarks/results/bench_gpu_cpu_tiny.json        # a check on the CPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import xarray as xr
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data.campaign import simulate_campaign, write_campaign  # noqa: E402
from data.physics import PhysicsParams  # noqa: E402
from data.simulator import saturation_ratio  # noqa: E402
from explain.api import DEFAULT_METHODS, Explainer  # noqa: E402
from explain.baselines import blurred  # noqa: E402
from explain.evaluation.faithfulness import deletion_insertion, deletion_insertion_loop  # noqa: E402
from explain.evaluation.protocol import evaluate  # noqa: E402
from surrogate.checkpoint import load_model, read_checkpoint  # noqa: E402
from surrogate.module import SurrogateModule  # noqa: E402
from surrogate.normaliser import PhysicalSurrogate  # noqa: E402
from train.inputs import resolve_device  # noqa: E402

CONFIGS = {"transport": "configs/default.yaml", "cnn": "configs/cnn.yaml"}
EXPLAIN_METHODS = ("gradcam", "hirescam", "layercam", "gradient", "gradient-x-input")
# name -> (SurrogateModule options, bf16-mixed autocast)
VARIANTS: dict[str, tuple[dict[str, bool], bool]] = {
    "fp32": ({}, False),
    "bf16-mixed": ({}, True),
    "channels_last": ({"channels_last": True}, False),
    "bf16-mixed+channels_last": ({"channels_last": True}, True),
}
COMPILED = {
    "compile": ({"compile": True}, False),
    "compile+bf16-mixed+channels_last": ({"compile": True, "channels_last": True}, True),
}
PRESETS = {
    "full": {"sizes": [64, 128], "batch": 64, "steps": 30, "warmup": 5, "explain_size": 64,
             "explain_batch": 64, "repeats": 7, "di_samples": 16, "di_steps": 100,
             "designs": 1000, "eval_steps": 100, "ddp_samples": 10000, "ddp_epochs": 3},
    "tiny": {"sizes": [16, 32], "batch": 8, "steps": 10, "warmup": 2, "explain_size": 32,
             "explain_batch": 8, "repeats": 5, "di_samples": 4, "di_steps": 10,
             "designs": 8, "eval_steps": 10, "ddp_samples": 64, "ddp_epochs": 1},
}  # fmt: skip
DDP_RUNS = {
    "1 device": ["--trainer.devices", "1"],
    "2 devices ddp": ["--trainer.devices", "2", "--trainer.strategy", "ddp"],
}
SECTIONS = ("training", "ddp", "explain", "faithfulness", "evaluate")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_settings(architecture: str) -> dict:
    """The ``model:`` block of the architecture's config (lr etc. included)."""
    return yaml.safe_load((ROOT / CONFIGS[architecture]).read_text())["model"]


def statistics_of(ds: xr.Dataset) -> dict[str, float]:
    """Normaliser statistics of simulated designs, as the data module gives them."""
    x, y = ds["roughness"].values, ds["max_vorticity"].values
    return {"roughness_mean": float(x.mean()), "roughness_std": float(x.std()),
            "target_mean": float(y.mean()), "target_std": float(y.std())}  # fmt: skip


def fresh_module(architecture: str, size: int, stats: dict[str, float], **options: bool):
    """A SurrogateModule of the config's settings, its normalisers set as ``setup`` sets them."""
    torch.manual_seed(0)
    module = SurrogateModule(grid_shape=(size, size), **model_settings(architecture), **options)
    mean, std = stats["roughness_mean"], stats["roughness_std"]
    if not getattr(module.model.network, "centre_input", True):
        mean, std = 0.0, float(np.hypot(mean, std))
    module.model.input_norm.set_statistics(mean, std)
    module.model.target_norm.set_statistics(stats["target_mean"], stats["target_std"])
    module.setup("fit")  # compiles where asked; the normalisers are already set
    return module


# -- training ----------------------------------------------------------------------------


def warmed_step(architecture: str, size: int, variant: str, opts, device) -> tuple:
    """One variant's training step, ``step(i)``, after ``--warmup`` steps; and its row."""
    options, bf16 = {**VARIANTS, **COMPILED}[variant]
    ds = simulate_campaign(opts.batch * 2, size=size, seed=1)
    before = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    module = fresh_module(architecture, size, statistics_of(ds), **options).to(device).train()
    x = torch.as_tensor(ds["roughness"].values)[:, None].to(device)
    y = torch.as_tensor(ds["max_vorticity"].values).to(device)
    batches = [(x[i::2], y[i::2]) for i in range(2)]
    optimizer = torch.optim.AdamW(module.parameters(), lr=module.hparams.lr)

    def step(i: int) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = module.training_step(batches[i % 2], i)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    start = time.perf_counter()
    for i in range(opts.warmup):
        step(i)
    sync(device)
    row = {"warmup_s": time.perf_counter() - start}
    if device.type == "cuda":
        row["peak_memory_mib"] = (torch.cuda.max_memory_allocated(device) - before) / 2**20
    return step, row


def training_group(architecture: str, size: int, opts, device) -> dict:
    """Every variant at one size, warmed up, then timed in interleaved blocks of ``--steps``
    steps (so that a burst of other load hits all alike); the median block of each."""
    torch._dynamo.reset()  # the compiled variants start from scratch, not another size's cache
    variants = [*VARIANTS, *(COMPILED if opts.compile else ())]
    rows, steps = {}, {}
    for variant in variants:
        try:
            steps[variant], rows[variant] = warmed_step(architecture, size, variant, opts, device)
        except Exception as exc:
            rows[variant] = failure(exc)
    blocks: dict[str, list[float]] = {v: [] for v in steps}
    for _ in range(opts.repeats):
        for variant in list(steps):
            begin = time.perf_counter()
            try:
                for i in range(opts.steps):
                    steps[variant](i)
                sync(device)
            except Exception as exc:
                rows[variant], _ = failure(exc), steps.pop(variant)
                continue
            blocks[variant].append(time.perf_counter() - begin)
    for variant in steps:
        seconds = statistics.median(blocks[variant])
        rows[variant].update(
            samples_per_s=opts.steps * opts.batch / seconds,
            best_samples_per_s=opts.steps * opts.batch / min(blocks[variant]),
            step_ms=1e3 * seconds / opts.steps,
        )
    fp32 = rows["fp32"].get("samples_per_s")
    for row in rows.values():
        if fp32 and "samples_per_s" in row:
            row["x_fp32"] = row["samples_per_s"] / fp32
    return rows


def training_section(opts, device) -> dict:
    out: dict = {"batch": opts.batch, "steps": opts.steps, "warmup": opts.warmup,
                 "blocks": opts.repeats}  # fmt: skip
    for architecture in CONFIGS:
        for size in opts.sizes:
            rows = guarded(training_group, architecture, size, opts, device)
            if "error" in rows:
                rows = {"all variants": rows}
            for variant, row in rows.items():
                out[f"{architecture} {size}x{size} {variant}"] = row
                say(f"{architecture} {size}x{size} {variant}", row)
    return out


# -- DDP ----------------------------------------------------------------------------------


def ddp_section(opts, device) -> dict:
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    if gpus < 2 and not opts.ddp_cpu:
        return {"skipped": f"fewer than 2 GPUs ({gpus})"}
    command = shutil.which("surrogate", path=str(Path(sys.executable).parent)) or shutil.which(
        "surrogate"
    )
    if command is None:
        return {"skipped": "no 'surrogate' command on the PATH (pip install -e .)"}
    accelerator = "gpu" if gpus >= 2 else "cpu"
    size = opts.sizes[0]
    out: dict = {"accelerator": accelerator, "samples": opts.ddp_samples, "size": size,
                 "epochs": opts.ddp_epochs, "note": "--data.batch_size is per process"}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        campaign = write_campaign(
            simulate_campaign(opts.ddp_samples, size=size, seed=0), Path(tmp) / "campaign.nc"
        )
        for architecture, config in CONFIGS.items():
            for label, extra in DDP_RUNS.items():
                run_dir = Path(tmp) / f"{architecture}-{label.split()[0]}"
                args = [command, "fit", "--config", config, "--data.path", str(campaign),
                        "--data.size", str(size), "--data.simulate_samples", str(opts.ddp_samples),
                        "--run_dir", str(run_dir), "--trainer.max_epochs", str(opts.ddp_epochs),
                        "--trainer.accelerator", accelerator,
                        "--trainer.enable_progress_bar", "false", *extra]  # fmt: skip
                key = f"{architecture} {label}"
                out[key] = guarded(fit_once, args, run_dir)
                say(key, out[key])
            one, two = (out[f"{architecture} {k}"].get("samples_per_s") for k in DDP_RUNS)
            if one and two:
                out[f"{architecture} speedup"] = two / one
    return out


def fit_once(args: list[str], run_dir: Path) -> dict:
    start = time.perf_counter()
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"exit {done.returncode}: {done.stderr.strip()[-600:]}")
    (summary_file,) = run_dir.glob("version_*/fit_summary.json")
    summary = json.loads(summary_file.read_text())
    seen = summary["train_samples"] * summary["epochs"]
    return {"process_wall_s": wall, "fit_wall_s": summary["wall_seconds"],
            "train_samples": summary["train_samples"], "epochs": summary["epochs"],
            "samples_per_s": seen / summary["wall_seconds"]}  # fmt: skip


# -- explanation, faithfulness, evaluation --------------------------------------------------


def models(opts, size: int) -> dict[str, PhysicalSurrogate]:
    """``{name: model}`` in eval mode: the checkpoint's, or both fresh architectures."""
    if opts.checkpoint is not None:
        return {"checkpoint": load_model(opts.checkpoint)}
    stats = statistics_of(simulate_campaign(64, size=size, seed=2))
    return {a: fresh_module(a, size, stats).model.eval() for a in CONFIGS}


def time_interleaved(fns: dict[str, Callable[[], object]], repeats: int, device) -> dict:
    """Median seconds of each function, after one warm-up call each, repeats interleaved."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(v) for name, v in times.items()}


def explain_contenders(model, x: torch.Tensor, ex: Explainer) -> tuple[dict, list[str]]:
    from captum.attr import LayerGradCam, LayerGradientXActivation

    layer = dict(model.named_modules())[ex.layer]
    gradcam, gxa = LayerGradCam(model, layer), LayerGradientXActivation(model, layer)

    def forward() -> None:
        with torch.no_grad():
            model(x)

    fns = {
        "forward": forward,
        "ours: " + "+".join(EXPLAIN_METHODS): lambda: ex.maps(x),
        "captum: LayerGradCam+LayerGradientXActivation": lambda: (
            gradcam.attribute(x, relu_attributions=False),
            gxa.attribute(x).sum(dim=1),
        ),
    }
    notes = []
    try:
        from pytorch_grad_cam import GradCAM, HiResCAM, LayerCAM
    except ImportError:
        notes.append("pytorch-grad-cam: skipped, not installed")
    else:
        targets = [lambda out: out for _ in range(len(x))]

        def pgc() -> None:
            for cls in (GradCAM, HiResCAM, LayerCAM):  # the documented use: one per method
                with cls(model=model, target_layers=[layer]) as cam:
                    cam(input_tensor=x, targets=targets)

        fns["pytorch-grad-cam: GradCAM+HiResCAM+LayerCAM"] = pgc
    return fns, notes


def explain_section(opts, device) -> dict:
    size = opts.explain_size
    ds = simulate_campaign(opts.explain_batch, size=size, seed=3)
    x = torch.as_tensor(ds["roughness"].values)[:, None].to(device)
    out: dict = {"batch": opts.explain_batch, "size": size, "repeats": opts.repeats}
    for name, model in models(opts, size).items():
        model = model.to(device)
        ex = Explainer(model, (size, size), EXPLAIN_METHODS, interpolation=("none",))
        fns, notes = explain_contenders(model, x, ex)
        medians = time_interleaved(fns, opts.repeats, device)
        rows = {k: {"median_s": t, "x_forward": t / medians["forward"]} for k, t in medians.items()}
        out[name] = {"layer": ex.layer, "rows": rows, "notes": notes}
        for key, row in rows.items():
            say(f"{name} {key}", row)
        for note in notes:
            print(f"  {name}: {note}", flush=True)
    return out


def timed_curves(fn: Callable, model, x, maps, baseline, steps: int, device) -> tuple:
    """``fn``'s curves (same tie-breaking seed each time) and its wall time in seconds."""
    sync(device)
    start = time.perf_counter()
    curves = fn(model, x, maps, baseline, steps=steps, generator=torch.Generator().manual_seed(1))
    sync(device)
    return curves, time.perf_counter() - start


def faithfulness_section(opts, device) -> dict:
    size = opts.explain_size
    ds = simulate_campaign(opts.di_samples, size=size, seed=4)
    x = torch.as_tensor(ds["roughness"].values)[:, None]
    baseline = blurred(x)
    out: dict = {"samples": opts.di_samples, "size": size, "steps": opts.di_steps}
    for name, model in models(opts, size).items():
        model = model.to(device)
        ex = Explainer(model, (size, size), ["gradient-x-input"], interpolation=("none",))
        maps = ex.maps(x)[1]["gradient-x-input"].detach().cpu()
        args = (model, x, maps, baseline, opts.di_steps, device)
        timed_curves(deletion_insertion, *args)  # warm-up
        batched_runs = [timed_curves(deletion_insertion, *args) for _ in range(opts.repeats)]
        batched, loop = batched_runs[-1][0], timed_curves(deletion_insertion_loop, *args)
        batched_s = statistics.median(t for _, t in batched_runs)
        out[name] = {
            "batched_s": batched_s, "loop_s": loop[1], "speedup": loop[1] / batched_s,
            "max_abs_diff_output": max(
                float((batched.deletion_output - loop[0].deletion_output).abs().max()),
                float((batched.insertion_output - loop[0].insertion_output).abs().max())),
            "max_abs_diff_auc": max(
                float((batched.deletion_auc - loop[0].deletion_auc).abs().nan_to_num().max()),
                float((batched.insertion_auc - loop[0].insertion_auc).abs().nan_to_num().max())),
        }  # fmt: skip
        say(name, out[name])
    return out


def evaluate_section(opts, device) -> dict:
    size = opts.explain_size
    name, model = next(iter(models(opts, size).items()))  # the checkpoint, or the default
    model = model.to(device)
    ds = simulate_campaign(opts.designs, size=size, seed=5)
    target = ds["max_vorticity"].values
    physics = PhysicsParams.from_attrs(ds.attrs)
    sanity = min(16, opts.designs)
    sync(device)
    start = time.perf_counter()
    ev = evaluate(
        model, ds["roughness"].values, truth=ds["contribution"].values,
        peak_margin=ds["peak_margin"].values, saturation=saturation_ratio(target, physics.omega_s),
        target_std=float(np.std(target)), steps=opts.eval_steps, sanity_samples=sanity,
        layer_sweep_methods=DEFAULT_METHODS, progress=False,
    )  # fmt: skip
    sync(device)
    seconds = time.perf_counter() - start
    out = {"model": name, "designs": opts.designs, "size": size, "steps": opts.eval_steps,
           "sanity_samples": sanity, "methods": len(ev.methods), "wall_s": seconds,
           "designs_per_s": opts.designs / seconds}  # fmt: skip
    say("evaluate", out)
    return out


# -- the run --------------------------------------------------------------------------------


def guarded(fn: Callable[..., dict], *args: object) -> dict:
    """``fn(*args)``, or its error as a row: one failure must not cost the rest of the run."""
    try:
        return fn(*args)
    except Exception as exc:
        return failure(exc)


def failure(exc: Exception) -> dict:
    """The error as a row (its traceback on stderr)."""
    traceback.print_exception(exc)
    return {"error": f"{type(exc).__name__}: {str(exc)[:600]}"}


def say(key: str, row: dict) -> None:
    shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}
    print(f"  {key}: {shown}", flush=True)


def machine(device: torch.device) -> dict:
    import captum
    import lightning

    info = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "cuda_devices": torch.cuda.device_count(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "lightning": lightning.__version__,
        "captum": captum.__version__,
    }
    git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    info["commit"] = git.stdout.strip() if git.returncode == 0 else None
    return info


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (cuda when present), cpu, cuda[:N]")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes, for a CPU check")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--checkpoint", type=Path, help="explain/evaluate this model")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--ddp-cpu", action="store_true", help="run the DDP section with gloo")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: as is)")
    for key, full in PRESETS["full"].items():
        many = "+" if isinstance(full, list) else None
        tiny = PRESETS["tiny"][key]
        parser.add_argument(
            f"--{key.replace('_', '-')}", type=int, nargs=many, help=f"{full} ({tiny} with --tiny)"
        )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/bench_gpu.json")
    opts = parser.parse_args(argv)
    if opts.checkpoint is not None and opts.explain_size is None:  # the grid it was trained on
        opts.explain_size = read_checkpoint(opts.checkpoint)["hyper_parameters"]["grid_shape"][0]
    for key, value in PRESETS["tiny" if opts.tiny else "full"].items():
        if getattr(opts, key) is None:
            setattr(opts, key, value)
    return opts


def main(argv: list[str] | None = None) -> dict:
    opts = parse(argv)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    # known and harmless: logging outside a Trainer; the transport's graph breaks
    # (scipy's next_fast_len) and complex FFTs that inductor leaves to eager kernels
    for message in ("You are trying to `self.log", "Dynamo", "Torchinductor does not support"):
        warnings.filterwarnings("ignore", message=message)
    device = torch.device(resolve_device(opts.device))
    result = {
        "benchmark": "GPU: training speed options, DDP, explanation and evaluation cost",
        "command": " ".join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)]),
        "machine": machine(device),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(opts).items()},
    }
    sections = {"training": training_section, "ddp": ddp_section, "explain": explain_section,
                "faithfulness": faithfulness_section, "evaluate": evaluate_section}  # fmt: skip
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    for name in opts.sections:
        print(f"== {name} ({device})", flush=True)
        start = time.perf_counter()
        result[name] = guarded(sections[name], opts, device)
        result[name]["section_s"] = time.perf_counter() - start
        # written after every section: a run cut short keeps what it measured
        opts.out.write_text(json.dumps(result, indent=2) + "\n")
    result["machine"]["load_average_1min_end"] = os.getloadavg()[0]
    opts.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {opts.out}")
    return result


if __name__ == "__main__":
    main()
