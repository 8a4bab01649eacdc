"""SurrogateModule: loss on standardised values, sign flip, and a fast_dev_run fit."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import pytest
import torch

from surrogate.module import SurrogateModule

pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log")


def _module(**kwargs: object) -> SurrogateModule:
    torch.manual_seed(0)
    return SurrogateModule(widths=(4, 8), convs_per_stage=1, grid_shape=(16, 16), **kwargs)


def _fitted(stats: dict[str, float], **kwargs: object) -> SurrogateModule:
    module = _module(**kwargs)
    module.model.input_norm.set_statistics(stats["roughness_mean"], stats["roughness_std"])
    module.model.target_norm.set_statistics(stats["target_mean"], stats["target_std"])
    return module.eval()


def _batch(seed: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(6, 1, 16, 16, generator=generator), 3 + torch.rand(6, generator=generator)


def _hand_loss(module: SurrogateModule, x: torch.Tensor, y: torch.Tensor, s: dict) -> torch.Tensor:
    standardised = module.model.network((x - s["roughness_mean"]) / s["roughness_std"])
    return ((standardised - (y - s["target_mean"]) / s["target_std"]) ** 2).mean()


def test_hyperparameters_saved() -> None:
    module = _module(head="max", kernel_size=(3, 5))
    assert tuple(module.hparams["widths"]) == (4, 8)
    assert module.hparams["head"] == "max"
    assert tuple(module.hparams["grid_shape"]) == (16, 16)
    assert module.model.network.fc.in_features == 8


def test_step_loss_is_mse_of_standardised_values(stats: dict[str, float]) -> None:
    module = _fitted(stats)
    x, y = _batch()
    with torch.no_grad():
        loss = module._step((x, y), "val")
        expected = _hand_loss(module, x, y, stats)
        prediction = module(x)
    assert loss.ndim == 0
    assert loss.item() > 0
    torch.testing.assert_close(loss, expected, atol=1e-6, rtol=1e-6)
    # metrics are updated in physical units
    mae = module.metrics["val_metrics"].compute()["val/mae"]
    torch.testing.assert_close(mae, (prediction - y).abs().mean(), atol=1e-6, rtol=1e-6)


def test_train_step_applies_seeded_sign_flip(stats: dict[str, float]) -> None:
    module = _fitted(stats, sign_flip=True)
    x, y = _batch()
    torch.manual_seed(11)
    flip = torch.randint(0, 2, (6, 1, 1, 1))
    assert 0 < int(flip.sum()) < 6, "choose a seed that flips some samples but not all"
    with torch.no_grad():
        torch.manual_seed(11)
        loss = module._step((x, y), "train")
        flipped = _hand_loss(module, x * (1 - 2 * flip.float()), y, stats)
        unflipped = _hand_loss(module, x, y, stats)
    torch.testing.assert_close(loss, flipped, atol=1e-6, rtol=1e-6)
    assert abs(loss.item() - unflipped.item()) > 1e-6


def test_no_flip_when_disabled(stats: dict[str, float]) -> None:
    module = _fitted(stats, sign_flip=False)
    x, y = _batch()
    with torch.no_grad():
        loss = module._step((x, y), "train")
    torch.testing.assert_close(loss, _hand_loss(module, x, y, stats), atol=1e-6, rtol=1e-6)


def test_predict_step_returns_physical_output(stats: dict[str, float]) -> None:
    module = _fitted(stats)
    x, _ = _batch()
    with torch.no_grad():
        expected = module(x)
        torch.testing.assert_close(module.predict_step((x,), 0), expected, atol=0, rtol=0)
        torch.testing.assert_close(module.predict_step(x, 0), expected, atol=0, rtol=0)


def _trainer() -> L.Trainer:
    return L.Trainer(
        fast_dev_run=True,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def test_fast_dev_run_fits_normaliser_from_training_statistics(
    make_data: Callable, stats: dict[str, float]
) -> None:
    module = _module()
    assert not bool(module.model.target_norm.fitted)
    before = module.model.network.fc.weight.detach().clone()
    data = make_data(stats)
    trainer = _trainer()
    trainer.fit(module, datamodule=data)
    norms = module.model
    assert bool(norms.input_norm.fitted)
    assert bool(norms.target_norm.fitted)
    assert norms.input_norm.mean.item() == stats["roughness_mean"]
    assert norms.input_norm.std.item() == stats["roughness_std"]
    assert norms.target_norm.mean.item() == stats["target_mean"]
    assert norms.target_norm.std.item() == stats["target_std"]
    assert data.statistics_calls == 1
    assert not torch.equal(before, module.model.network.fc.weight.detach())
    optimizer = trainer.optimizers[0]
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults["weight_decay"] == module.hparams["weight_decay"]
    scheduler = trainer.lr_scheduler_configs[0]
    assert isinstance(scheduler.scheduler, torch.optim.lr_scheduler.OneCycleLR)
    assert scheduler.interval == "step"


def test_second_fit_keeps_first_statistics(make_data: Callable, stats: dict[str, float]) -> None:
    module = _module()
    _trainer().fit(module, datamodule=make_data(stats))
    other = make_data({k: v * 3 for k, v in stats.items()})
    _trainer().fit(module, datamodule=other)
    assert other.statistics_calls == 0
    assert module.model.target_norm.mean.item() == stats["target_mean"]
