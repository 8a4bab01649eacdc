"""Run artefacts: the split, test metrics as JSON, a parity plot and a residual histogram."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from data.atomic import atomic_path


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as indented JSON to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


class RunArtifacts(L.Callback):
    """Saves the split at fit start; after testing, writes metrics and diagnostic plots.

    Files land in the trainer's log directory: ``split.json``, ``test_metrics.json``,
    ``parity.png``/``.pdf`` and ``residuals.png``/``.pdf``.
    """

    def __init__(self) -> None:
        self._pred: list[torch.Tensor] = []
        self._true: list[torch.Tensor] = []

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dm = trainer.datamodule
        if trainer.is_global_zero and getattr(dm, "splits", None) is not None:
            split = {k: v.tolist() for k, v in dm.splits.items()}
            split["campaign"] = os.fspath(dm.hparams.path)
            write_json(Path(trainer.log_dir) / "split.json", split)

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pred, self._true = [], []

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                          outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        roughness, target = batch
        with torch.no_grad():
            self._pred.append(pl_module(roughness).float().cpu())
        self._true.append(target.float().cpu())

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or not self._pred:
            return
        out = Path(trainer.log_dir)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
        metrics["test/samples"] = int(sum(len(p) for p in self._pred))
        write_json(out / "test_metrics.json", metrics)
        pred = torch.cat(self._pred).numpy()
        true = torch.cat(self._true).numpy()
        from train.plots import parity_plot, residual_histogram

        parity_plot(true, pred, metrics.get("test/r2", float("nan")), out / "parity")
        residual_histogram(pred - true, out / "residuals")
        np.savez(out / "test_predictions.npz", predicted=pred, simulated=true)
