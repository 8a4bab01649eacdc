"""TransportNet: linear causal transport, wake maximum, checkpoints, and the architecture switch."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from data.errors import InputError
from surrogate import load_model
from surrogate.architectures import build_network, network_hparams
from surrogate.module import SurrogateModule
from surrogate.transport import TransportNet

SMALL = {"channels": 2, "span": 15, "reach": 20, "wake": 4, "hidden": 8}


def test_output_is_one_value_per_design() -> None:
    net = TransportNet(**SMALL)
    assert net(torch.randn(3, 1, 16, 16)).shape == (3,)


def test_transport_is_linear_and_causal() -> None:
    net = TransportNet(**SMALL).double()
    h = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    h[0, 0, 7, 5] = 1.0
    w = net.transport(h)
    assert w.shape == (1, 2, 16, 20)  # the patch plus the wake
    # nothing upstream: the streamwise stencil reaches one cell back at most
    assert w[..., :4].abs().max() < 1e-12
    assert w[..., 4:].abs().max() > 0
    # the response at (y, x) is the kernel at offset (y - 7, x - 5): a convolution
    torch.testing.assert_close(w[0, :, 7 + 3, 5 + 6], net.kernel[:, 15 + 3, 1 + 6].detach())
    g = torch.randn(1, 1, 16, 16, dtype=torch.float64)
    torch.testing.assert_close(net.transport(2 * h - g), 2 * w - net.transport(g))


def test_output_is_the_head_of_a_smooth_wake_maximum() -> None:
    """Recomputed by hand: response over the wake columns only, log-sum-exp, head."""
    net = TransportNet(**SMALL).double()
    x = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    wake = net.response(net.transport(x)[..., 16:]).flatten(1)  # columns 16..19: the wake
    assert wake.shape == (2, 16 * 4)
    peak = net.tau * (torch.logsumexp(wake / net.tau, dim=1) - torch.log(torch.tensor(64.0)))
    torch.testing.assert_close(net(x), net.head(peak[:, None]).squeeze(1).detach())
    with pytest.raises(ValueError, match="tau"):
        TransportNet(tau=0.0)


def test_architecture_switch_and_hyper_parameters() -> None:
    assert isinstance(build_network("transport", **SMALL), TransportNet)
    full = network_hparams("transport", channels=3)
    assert full["channels"] == 3 and full["span"] == 63  # noqa: PT018
    with pytest.raises(InputError, match="not arguments of the 'cnn' network"):
        network_hparams("cnn", hidden=8)
    with pytest.raises(InputError, match="choose from"):
        network_hparams("unet")


def test_checkpoint_round_trip(make_data, stats, tmp_path: Path) -> None:
    module = SurrogateModule(architecture="transport", grid_shape=(16, 16), **SMALL)
    trainer = L.Trainer(
        max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu",
    )  # fmt: skip
    trainer.fit(module, datamodule=make_data(stats))
    path = tmp_path / "transport.ckpt"
    trainer.save_checkpoint(path)
    model = load_model(path)
    assert isinstance(model.network, TransportNet)
    x = torch.randn(4, 1, 16, 16)
    torch.testing.assert_close(model(x), module.eval().model(x))
