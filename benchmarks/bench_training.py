"""Training throughput: Lightning's loop vs a plain PyTorch loop, same model, data and math.

Both loops run the same SurrogateModule network on the same in-memory batches: sign-flip
augmentation, MSE on the standardised target, AdamW with a one-cycle schedule and the
torchmetrics update. Lightning runs without validation, checkpoints or logger so the
comparison isolates the loop's own overhead. Repeats are interleaved so background load
hits both alike; the median epoch time of each is reported.

    python benchmarks/bench_training.py --samples 2048 --epochs 3 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from data.campaign import simulate_campaign
from surrogate.module import SurrogateModule

MODEL = {
    "widths": (32, 64, 128, 256),
    "kernel_size": (3, 5),
    "stem_stride": 2,
    "coord_channels": True,
    "head": "gap",
}


class EpochTimer(L.Callback):
    """Wall time of each training epoch."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.times.append(time.perf_counter() - self._t)


class Stats(L.LightningDataModule):
    def __init__(self, loader: DataLoader, stats: dict[str, float]) -> None:
        super().__init__()
        self.loader, self.stats = loader, stats

    def training_statistics(self) -> dict[str, float]:
        return self.stats

    def train_dataloader(self) -> DataLoader:
        return self.loader


def make_module(stats: dict[str, float], seed: int) -> SurrogateModule:
    torch.manual_seed(seed)
    module = SurrogateModule(**MODEL)
    module.model.input_norm.set_statistics(stats["roughness_mean"], stats["roughness_std"])
    module.model.target_norm.set_statistics(stats["target_mean"], stats["target_std"])
    return module


def lightning_epochs(loader: DataLoader, stats: dict[str, float], epochs: int) -> list[float]:
    timer = EpochTimer()
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[timer],
    )
    trainer.fit(make_module(stats, 0), datamodule=Stats(loader, stats))
    return timer.times


def plain_epochs(loader: DataLoader, stats: dict[str, float], epochs: int) -> list[float]:
    module = make_module(stats, 0)
    model, metrics = module.model, module.metrics["train_metrics"]
    optimizer = torch.optim.AdamW(
        module.parameters(), lr=module.hparams.lr, weight_decay=module.hparams.weight_decay
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=module.hparams.lr, total_steps=epochs * len(loader)
    )
    model.train()
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        for roughness, target in loader:
            flip = torch.randint(0, 2, (roughness.shape[0], 1, 1, 1))
            roughness = roughness * (1 - 2 * flip.to(roughness.dtype))
            standardised = model.network(model.input_norm(roughness))
            loss = torch.nn.functional.mse_loss(standardised, model.target_norm(target))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            metrics.update(model.target_norm.inverse(standardised.detach()), target)
        metrics.compute()
        metrics.reset()
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/training.json"))
    opts = parser.parse_args(argv)
    torch.set_num_threads(opts.threads)
    ds = simulate_campaign(opts.samples, size=64, seed=1)
    x = torch.from_numpy(ds["roughness"].values)[:, None]
    y = torch.from_numpy(ds["max_vorticity"].values)
    stats = {
        "roughness_mean": float(x.mean()),
        "roughness_std": float(x.std()),
        "target_mean": float(y.mean()),
        "target_std": float(y.std()),
    }
    loader = DataLoader(TensorDataset(x, y), batch_size=opts.batch_size, shuffle=True)
    runs: dict[str, list[float]] = {"lightning": [], "plain": []}
    for _ in range(opts.repeats):
        # first epoch of each run is warm-up (allocator, oneDNN primitive caches)
        runs["plain"] += plain_epochs(loader, stats, opts.epochs)[1:]
        runs["lightning"] += lightning_epochs(loader, stats, opts.epochs)[1:]
    median = {k: statistics.median(v) for k, v in runs.items()}
    result = {
        "benchmark": "training throughput, Lightning vs plain PyTorch loop",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} threads={torch.get_num_threads()}",
        "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "model": MODEL,
        "samples": opts.samples,
        "batch_size": opts.batch_size,
        "epoch_seconds": runs,
        "samples_per_s": {k: opts.samples / v for k, v in median.items()},
        "lightning_overhead": median["lightning"] / median["plain"] - 1.0,
    }
    print(f"{'loop':<10} {'median epoch [s]':>17} {'samples/s':>10}")
    for k in ("plain", "lightning"):
        print(f"{k:<10} {median[k]:>17.2f} {result['samples_per_s'][k]:>10.1f}")
    print(f"Lightning overhead: {100 * result['lightning_overhead']:+.1f}% (goal <= 10%)")
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
