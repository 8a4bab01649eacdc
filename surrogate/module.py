"""LightningModule: MSE on the standardised target, metrics in physical units per split."""

from __future__ import annotations

import math
from typing import Any, Literal

import lightning as L
import torch
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection, R2Score

from data.errors import InputError
from surrogate.architectures import network_hparams
from surrogate.network import RoughnessCNN
from surrogate.normaliser import PhysicalSurrogate
from surrogate.transport import TransportNet


class SurrogateModule(L.LightningModule):
    """Trains a network (:mod:`surrogate.architectures`) to predict the maximum vorticity.

    Args:
        lr: Peak learning rate of the one-cycle schedule.
        weight_decay: AdamW weight decay.
        sign_flip: Augment by ``h -> -h``. Exact for this physics: the vorticity field is
            linear in ``h`` and the target depends on ``|w|`` only.
        grid_shape: ``(y, x)`` cells of the roughness grid (linked from the data module).
        architecture: ``"cnn"`` (:class:`~surrogate.network.RoughnessCNN`) or ``"transport"``
            (:class:`~surrogate.transport.TransportNet`, shaped like the physics).
        channels_last: Hold the network's 4-d weights and every input batch in
            ``torch.channels_last`` memory format (faster convolutions on GPUs with tensor
            cores). Same values, same checkpoint keys.
        compile: Compile the network with ``torch.compile`` in :meth:`setup` (in place, so
            the checkpoint keys stay those of the plain network). The first steps are slower.
        **network: The network's hyper-parameters, its class's own arguments (``widths``,
            ``head``, ... for the CNN; ``channels``, ``span``, ... for the transport network).
    """

    def __init__(
        self,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        sign_flip: bool = True,
        grid_shape: tuple[int, int] = (64, 64),
        architecture: Literal["cnn", "transport"] = "cnn",
        channels_last: bool = False,
        compile: bool = False,
        **network: Any,
    ) -> None:
        super().__init__()
        if not (math.isfinite(lr) and lr > 0) or not (
            math.isfinite(weight_decay) and weight_decay >= 0
        ):
            raise InputError(
                f"--model.lr {lr} / --model.weight_decay {weight_decay}: expected a learning rate "
                "> 0 and a weight decay >= 0"
            )
        self.save_hyperparameters()
        # a checkpoint records every network hyper-parameter, defaults included
        self.hparams.update(network_hparams(architecture, **network))
        # the two calls spelled out, so that LightningCLI reads both networks' arguments
        net = TransportNet(**network) if architecture == "transport" else RoughnessCNN(**network)
        self.model = PhysicalSurrogate(net)
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self._compiled = False
        self.loss = nn.MSELoss()
        metrics = MetricCollection(
            {"r2": R2Score(), "rmse": MeanSquaredError(squared=False), "mae": MeanAbsoluteError()}
        )
        self.metrics = nn.ModuleDict(
            {
                f"{split}_metrics": metrics.clone(prefix=f"{split}/")
                for split in ("train", "val", "test")
            }
        )

    def setup(self, stage: str) -> None:
        """Compile the network if asked; fit the normalisers on the training split, once,
        before the first fit."""
        if self.hparams.compile and not self._compiled:
            # nn.Module.compile works in place: no "_orig_mod." in the state_dict keys
            self.model.network.compile()
            self._compiled = True
        if stage != "fit" or bool(self.model.target_norm.fitted):
            return
        stats = self.trainer.datamodule.training_statistics()
        mean, std = stats["roughness_mean"], stats["roughness_std"]
        if not getattr(self.model.network, "centre_input", True):
            mean, std = 0.0, math.hypot(mean, std)  # scaled by the rms height, not shifted
        self.model.input_norm.set_statistics(mean, std)
        self.model.target_norm.set_statistics(stats["target_mean"], stats["target_std"])

    def forward(self, roughness: torch.Tensor) -> torch.Tensor:
        """Max vorticity in U_e/delta, ``(batch,)``, for roughness ``(batch, 1, y, x)`` in delta."""
        return self.model(self._memory_format(roughness))

    def _memory_format(self, roughness: torch.Tensor) -> torch.Tensor:
        """``roughness`` in the network's memory format (``channels_last`` where asked)."""
        if self.hparams.channels_last and roughness.ndim == 4:
            return roughness.contiguous(memory_format=torch.channels_last)
        return roughness

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], split: str) -> torch.Tensor:
        roughness, target = batch
        roughness = self._memory_format(roughness)
        if split == "train" and self.hparams.sign_flip:
            flip = torch.randint(0, 2, (roughness.shape[0], 1, 1, 1), device=roughness.device)
            roughness = roughness * (1 - 2 * flip.to(roughness.dtype))
        standardised = self.model.network(self.model.input_norm(roughness))
        loss = self.loss(standardised, self.model.target_norm(target))
        prediction = self.model.target_norm.inverse(standardised.detach())
        # metric states are summed over the ranks at compute: epoch values are global under DDP
        self.metrics[f"{split}_metrics"].update(prediction, target)
        on_step = split == "train"
        self.log(
            f"{split}/loss",
            loss,
            on_step=on_step,
            on_epoch=True,
            prog_bar=on_step,
            batch_size=len(target),
            sync_dist=True,  # the epoch mean over every rank under DDP (no-op on one)
        )
        self.log_dict(
            self.metrics[f"{split}_metrics"],
            on_step=False,
            on_epoch=True,
            prog_bar=split == "val",
            batch_size=len(target),
        )
        penalty = getattr(self.model.network, "penalty", None)  # a prior of the network's own
        return loss + penalty() if split == "train" and penalty is not None else loss

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        roughness = batch[0] if isinstance(batch, list | tuple) else batch
        return self(roughness)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=self.hparams.lr,
            total_steps=int(self.trainer.estimated_stepping_batches),
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Resuming with another ``max_epochs``: keep the steps taken, but the one-cycle
        schedule just built for the new total, instead of the saved one, which ends at the
        old total (and would refuse to step past it)."""
        for state in checkpoint.get("lr_schedulers", []):
            for key in ("total_steps", "_schedule_phases"):
                state.pop(key, None)
