"""Speed options of SurrogateModule: channels_last, torch.compile and bf16-mixed precision."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import lightning as L
import pytest
import torch

from surrogate.checkpoint import load_model, model_from_checkpoint
from surrogate.module import SurrogateModule
from surrogate.transport import TransportNet

pytestmark = pytest.mark.filterwarnings(
    "ignore:You are trying to `self.log", "ignore:Dynamo", "ignore:Torchinductor"
)

REPO = Path(__file__).resolve().parents[2]
# tiny networks of both architectures, on the 16x16 grid of the conftest data
NETWORKS = {
    "cnn": {"widths": (4, 8), "convs_per_stage": 1, "coord_channels": True},
    "transport": {
        "architecture": "transport", "kernel": "marching", "source": True, "even": True,
        "monotone": True, "channels": 1, "tau": 0.0, "span": 7, "reach": 20, "wake": 4,
    },
}  # fmt: skip


def _compile_works() -> bool:
    """torch.compile's default backend (inductor) needs dynamo and, on the CPU, a C++ compiler."""
    return torch._dynamo.is_dynamo_supported() and shutil.which("g++") is not None


def _module(stats: dict[str, float], architecture: str, **options: object) -> SurrogateModule:
    torch.manual_seed(0)
    module = SurrogateModule(grid_shape=(16, 16), **NETWORKS[architecture], **options)
    module.model.input_norm.set_statistics(stats["roughness_mean"], stats["roughness_std"])
    module.model.target_norm.set_statistics(stats["target_mean"], stats["target_std"])
    return module.eval()


def _roughness() -> torch.Tensor:
    return torch.randn(6, 1, 16, 16, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("architecture", list(NETWORKS))
def test_channels_last_gives_the_plain_predictions(
    stats: dict[str, float], architecture: str
) -> None:
    plain = _module(stats, architecture)
    fast = _module(stats, architecture, channels_last=True)
    x = _roughness()
    target = 3 + torch.rand(6, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(fast(x), plain(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            fast._step((x, target), "val"), plain._step((x, target), "val"), atol=1e-5, rtol=1e-5
        )
        torch.testing.assert_close(fast.predict_step(x, 0), plain(x), atol=1e-5, rtol=1e-5)
    assert list(fast.state_dict()) == list(plain.state_dict())
    convs = [p for p in fast.parameters() if p.ndim == 4]
    assert convs
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)


@pytest.mark.slow
@pytest.mark.skipif(not _compile_works(), reason="torch.compile (inductor) is unavailable here")
@pytest.mark.parametrize("architecture", list(NETWORKS))
def test_compile_gives_the_plain_predictions_and_keys(
    stats: dict[str, float], architecture: str
) -> None:
    plain = _module(stats, architecture)
    fast = _module(stats, architecture, compile=True)
    fast.setup("predict")
    x = _roughness()
    with torch.no_grad():
        torch.testing.assert_close(fast(x), plain(x), atol=1e-5, rtol=1e-5)
    assert list(fast.state_dict()) == list(plain.state_dict())
    # what a checkpoint of the compiled module holds loads into a plain model
    ckpt = {"state_dict": fast.state_dict(), "hyper_parameters": dict(fast.hparams)}
    with torch.no_grad():
        torch.testing.assert_close(model_from_checkpoint(ckpt)(x), plain(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("architecture", list(NETWORKS))
def test_bf16_mixed_training_step_on_the_cpu(
    stats: dict[str, float], make_data: Callable[..., L.LightningDataModule], architecture: str
) -> None:
    module = _module(stats, architecture).train()
    before = [p.detach().clone() for p in module.parameters()]
    trainer = L.Trainer(
        accelerator="cpu", precision="bf16-mixed", max_steps=1, limit_val_batches=0,
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module, datamodule=make_data(stats))
    assert trainer.global_step == 1
    assert all(p.dtype == torch.float32 for p in module.parameters())
    assert all(bool(torch.isfinite(p).all()) for p in module.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


def test_transport_runs_its_ffts_in_float32() -> None:
    """A bfloat16 field (what a convolution gives under CUDA's autocast, which has no FFT
    rule) is transported in float32, as under the CPU's autocast."""
    torch.manual_seed(0)
    net = TransportNet(kernel="marching", source=True, channels=2, span=7, reach=20, wake=4)
    h = torch.randn(3, 2, 16, 16)
    exact = net.transport(h)
    from_bf16 = net.transport(h.bfloat16())
    assert from_bf16.dtype == torch.float32
    torch.testing.assert_close(from_bf16, exact, atol=2e-2 * exact.abs().max().item(), rtol=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = net.transport(h.bfloat16())
    assert under_autocast.dtype == torch.float32
    torch.testing.assert_close(under_autocast, from_bf16)


@pytest.mark.slow
def test_options_from_the_command_line(tmp_path: Path) -> None:
    """``--model.channels_last/--model.compile true`` and bf16-mixed through ``surrogate fit``;
    the checkpoint loads into a plain model."""
    from train.cli import main

    run_dir = tmp_path / "run"
    options = ["--model.channels_last", "true", "--trainer.precision", "bf16-mixed"]
    if _compile_works():
        options += ["--model.compile", "true"]
    args = ["fit", "--config", str(REPO / "configs" / "smoke.yaml"), "--run_dir", str(run_dir)]
    args += ["--data.path", str(tmp_path / "campaign.nc"), "--trainer.max_epochs", "1"]
    assert main([*args, *options]) == 0
    (best,) = (run_dir / "checkpoints").glob("best-*.ckpt")
    hparams = torch.load(best, weights_only=True)["hyper_parameters"]
    assert hparams["channels_last"] is True
    assert hparams["compile"] is _compile_works()
    model = load_model(best)
    assert not any("_orig_mod" in key for key in model.state_dict())
    with torch.no_grad():
        assert bool(torch.isfinite(model(_roughness())).all())
