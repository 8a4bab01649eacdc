"""Run artefacts: the split, test metrics as JSON, a parity plot and a residual histogram."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from data.atomic import atomic_path, write_netcdf
from data.campaign import POSITION_ATTRS, SAMPLE_ID_ATTRS, sample_ids
from data.provenance import cf_attrs, provenance


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as indented JSON to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


class RunArtifacts(L.Callback):
    """Saves the split at fit start; after testing, writes metrics and diagnostic plots.

    Files are written by global rank 0 only (every rank asks for ``trainer.log_dir``, a
    collective under DDP). Under DDP the test plots and ``test_predictions.npz`` hold rank 0's
    shard of the test designs; ``test_metrics.json`` holds the metrics over all of them.

    Files land in the trainer's log directory: ``split.json``, ``fit_summary.json``
    (wall time, epochs, best validation R^2), ``test_metrics.json``, ``parity.png``/``.pdf``
    and ``residuals.png``/``.pdf``.
    """

    def __init__(self) -> None:
        self._pred: list[torch.Tensor] = []
        self._true: list[torch.Tensor] = []
        self._fit_start = 0.0

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        log_dir = trainer.log_dir  # a broadcast under DDP: every rank must ask
        if not trainer.is_global_zero:
            return
        checkpoint = trainer.checkpoint_callback
        best = getattr(checkpoint, "best_model_score", None)
        write_json(
            Path(log_dir) / "fit_summary.json",
            {
                "wall_seconds": time.perf_counter() - self._fit_start,
                "epochs": trainer.current_epoch,
                "global_step": trainer.global_step,
                "best_val_r2": float(best) if best is not None else None,
                "best_checkpoint": getattr(checkpoint, "best_model_path", None),
                "train_samples": len(trainer.datamodule.splits["train"])
                if getattr(trainer.datamodule, "splits", None) is not None
                else None,
            },
        )

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fit_start = time.perf_counter()
        dm = trainer.datamodule
        log_dir = trainer.log_dir  # a broadcast under DDP: every rank must ask
        if trainer.is_global_zero and getattr(dm, "splits", None) is not None:
            split = {k: v.tolist() for k, v in dm.splits.items()}
            split["campaign"] = os.fspath(dm.hparams.path)
            write_json(Path(log_dir) / "split.json", split)

    def on_predict_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pred = []

    def on_predict_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._pred.append(outputs.float().cpu())

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """``predictions.nc``: a prediction per design of the campaign, in file order (the
        datamodule's predict set): ``sample`` their positions, ``sample_id`` the campaign's
        own ids, with units, long names and
        CF and provenance global attributes (checkpoint and campaign with their sha256)."""
        log_dir = trainer.log_dir  # a broadcast under DDP: every rank must ask
        if not trainer.is_global_zero or not self._pred:
            return
        import xarray as xr

        pred = torch.cat(self._pred).numpy()
        campaign = Path(trainer.datamodule.hparams.path)
        with xr.open_dataset(campaign, engine="h5netcdf") as found:
            # rank 0's shard under DDP (data.datamodule.ShardSampler): every world_size-th
            positions = np.arange(len(pred)) * trainer.world_size
            ids = sample_ids(found, positions)
        ckpt = trainer.ckpt_path
        known = ckpt is not None and Path(ckpt).is_file()
        inputs = provenance(ckpt if known else None, campaign)
        if ckpt is not None and not known:
            inputs["checkpoint"] = os.fspath(ckpt)
        described = cf_attrs(
            "surrogate predictions of the maximum wake vorticity",
            "predict",
            f"surrogate {Path(ckpt).name if ckpt else '(no checkpoint)'} "
            "(roughness -> max vorticity)",
        )
        ds = xr.Dataset(
            {
                "predicted_max_vorticity": (
                    "sample",
                    pred,
                    {"units": "U_e/delta", "long_name": "surrogate prediction of max_vorticity"},
                )
            },
            coords={
                "sample": ("sample", positions, POSITION_ATTRS),
                "sample_id": ("sample", ids, SAMPLE_ID_ATTRS),
            },
            attrs={**described, **inputs},
        )
        target = Path(log_dir) / "predictions.nc"
        write_netcdf(ds, target)
        print(f"wrote {len(pred)} predictions to {target}")

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pred, self._true = [], []

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        roughness, target = batch
        with torch.no_grad():
            self._pred.append(pl_module(roughness).float().cpu())
        self._true.append(target.float().cpu())

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        out = Path(trainer.log_dir)  # a broadcast under DDP: every rank must ask
        count = torch.tensor(sum(len(p) for p in self._pred), device=pl_module.device)
        count = int(trainer.strategy.reduce(count, reduce_op="sum"))  # designs of all ranks
        if not trainer.is_global_zero or not self._pred:
            return
        metrics = {
            k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")
        }
        metrics["test/samples"] = count
        write_json(out / "test_metrics.json", metrics)
        pred = torch.cat(self._pred).numpy()
        true = torch.cat(self._true).numpy()
        from train.plots import parity_plot, residual_histogram

        parity_plot(true, pred, metrics.get("test/r2", float("nan")), out / "parity")
        residual_histogram(pred - true, out / "residuals")
        with atomic_path(out / "test_predictions.npz") as tmp, tmp.open("wb") as f:
            np.savez(f, predicted=pred, simulated=true)
