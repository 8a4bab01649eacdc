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
from surrogate.transport import MonotoneHead, OrderedLinear, TransportNet, ordered_matmul

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
        TransportNet(tau=-1.0)
    with pytest.raises(ValueError, match="kernel"):
        TransportNet(kernel="spline")  # type: ignore[arg-type]


def test_tau_zero_takes_the_plain_maximum_and_even_is_exact() -> None:
    net = TransportNet(**SMALL, tau=0.0, even=True).double()
    x = torch.randn(3, 1, 16, 16, dtype=torch.float64)
    wake = net.transport(x)[..., 16:]  # (3, 2 channels, 16, 4)
    peaks = wake.abs().flatten(2).amax(2)  # each channel's largest magnitude
    assert net.response is None
    torch.testing.assert_close(net(x), net.head(peaks).squeeze(1).detach())
    torch.testing.assert_close(net(-x), net(x))  # f(-h) = f(h) by construction


def test_monotone_head_never_decreases_and_keeps_the_attribution_sign() -> None:
    """Any draw of the readout is non-decreasing in every peak, so integrated gradients from the
    smooth wall carry the transport's sign: the map sums to f(h) - f(0) >= 0."""
    head = MonotoneHead(inputs=2, hidden=8).double()
    for _ in range(5):
        head.reset_parameters()
        with torch.no_grad():
            head.weight.normal_(0, 3)
            head.bias.normal_(0, 3)
            head.slope.normal_(0, 3)
        peaks = torch.rand(256, 2, dtype=torch.float64).mul(6).requires_grad_(True)
        (grad,) = torch.autograd.grad(head(peaks).sum(), peaks)
        assert (grad >= 0).all()
        assert (grad > 0).float().mean() > 0.5  # increasing, not flat
    # by hand: b + softplus(v) . tanh(softplus(W) p + c)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[0.0, 1.0]] * 8, dtype=torch.float64))
        head.bias.fill_(0.5)
        head.slope.fill_(2.0)
        head.offset.fill_(-1.0)
    p = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    sp = torch.nn.functional.softplus
    inner = torch.tanh(sp(torch.tensor(0.0)) * 1.0 + sp(torch.tensor(1.0)) * 2.0 + 0.5)
    expected = -1.0 + 8 * float(sp(torch.tensor(2.0))) * float(inner)
    torch.testing.assert_close(head(p), torch.tensor([[expected]], dtype=torch.float64))
    net = TransportNet(**SMALL, tau=0.0, even=True, source=True, kernel="marching", monotone=True)
    net = net.double()
    x = torch.randn(3, 1, 16, 16, dtype=torch.float64)
    assert (net(x) >= net(torch.zeros_like(x))).all()
    assert isinstance(net.head, MonotoneHead)
    net.head.reset_parameters()  # model randomisation reaches it


def test_smoothness_penalty_is_the_kernels_relative_spanwise_roughness() -> None:
    """By hand on free taps: alternating rows have steps of 2, a row-constant kernel none."""
    net = TransportNet(**SMALL, smoothness=0.5)
    rows, cols = 2 * SMALL["span"] + 1, SMALL["reach"] + 1
    with torch.no_grad():
        net.taps.copy_(torch.tensor([(-1.0) ** r for r in range(rows)])[None, :, None])
    torch.testing.assert_close(net.penalty(), torch.tensor(0.5 * 4 * (rows - 1) / rows))
    with torch.no_grad():
        net.taps.fill_(3.0)
    torch.testing.assert_close(net.penalty(), torch.tensor(0.0))
    assert net.penalty().requires_grad
    assert TransportNet(**SMALL).penalty() == 0  # off by default
    assert cols == net.taps.shape[-1]
    with pytest.raises(ValueError, match="smoothness"):
        TransportNet(smoothness=-1.0)


def test_training_loss_carries_the_networks_penalty(stats) -> None:
    """The penalty enters the training loss only: validation and test report the data loss."""
    module = SurrogateModule(
        architecture="transport", grid_shape=(16, 16), kernel="marching", smoothness=0.3,
        sign_flip=False, **SMALL,
    )  # fmt: skip
    module.model.input_norm.set_statistics(stats["roughness_mean"], stats["roughness_std"])
    module.model.target_norm.set_statistics(stats["target_mean"], stats["target_std"])
    module.log = module.log_dict = lambda *args, **kwargs: None  # no trainer attached
    batch = (torch.randn(4, 1, 16, 16) * 0.02, torch.rand(4) * 0.1)
    data = module.loss(
        module.model.network(module.model.input_norm(batch[0])),
        module.model.target_norm(batch[1]),
    )
    penalty = module.model.network.penalty()
    assert penalty > 0
    torch.testing.assert_close(module.training_step(batch, 0), data + penalty)
    torch.testing.assert_close(module._step(batch, "val"), data)


def test_source_stencil_is_local_and_transported_channel_by_channel() -> None:
    net = TransportNet(**SMALL, source=True, even=True, tau=0.0).double()
    h = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    h[0, 0, 7, 5] = 1.0
    s = net.source(h)
    assert s.shape == (1, 2, 16, 16)
    assert s[..., :6, :].abs().max() == 0  # the 3x3 stencil reaches rows 6..8
    assert s[..., :, 7:].abs().max() == 0  # and columns 4..6
    # channel c of the source goes through kernel c only (depthwise)
    w = net.transport(s)
    expected = torch.zeros_like(w)
    for c in range(2):
        one = TransportNet(**SMALL).double()
        with torch.no_grad():
            one.taps.copy_(net.kernel.detach()[c : c + 1].expand(2, -1, -1))
        expected[:, c] = one.transport(s[:, c : c + 1])[:, 0]
    torch.testing.assert_close(w, expected)


def test_marching_kernel_is_one_rate_per_wavenumber() -> None:
    """One wavenumber k_j = 2 pi j / P lit: K(eta, xi) = (2/P) Re(a e^(g xi) e^(i k_j eta))."""
    net = TransportNet(**SMALL, kernel="marching", modes=1).double()
    march, period, j = net.marching, 2 * 15 + 2, 3
    a, g = complex(0.7, -0.4), complex(-0.05, 0.3)
    with torch.no_grad():
        march.amplitude.zero_()
        march.near.zero_()
        march.amplitude[0, 0, j] = torch.tensor([a.real, a.imag])
        march.rate[0, 0, j] = torch.tensor([g.real, g.imag]) / march.RATE_SCALE
    kernel = net.kernel.detach()
    assert kernel.shape == (2, 2 * 15 + 1, 20 + 1)
    eta = torch.arange(-15, 16, dtype=torch.float64)[:, None]
    xi = torch.arange(1, 20, dtype=torch.float64)[None, :]
    k = 2 * torch.pi * j / period
    expected = (2 / period) * (
        a * torch.exp(g * xi) * torch.exp(1j * k * eta.to(torch.complex128))
    ).real
    torch.testing.assert_close(kernel[0, :, 2:], expected)
    assert kernel[0, :, :2].abs().max() == 0  # the near field is off
    assert kernel[1].abs().max() == 0  # the other channel too


def test_marching_transport_is_linear_and_causal() -> None:
    net = TransportNet(**SMALL, kernel="marching").double()
    h = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    h[0, 0, 7, 5] = 1.0
    w = net.transport(h)
    assert w[..., :4].abs().max() < 1e-12
    torch.testing.assert_close(w[0, :, 7 - 2, 5 + 9], net.kernel[:, 15 - 2, 1 + 9].detach())


def test_every_parameter_can_be_redrawn_and_old_checkpoints_load() -> None:
    """Model randomisation needs reset_parameters(); the free taps were once called 'kernel'."""
    for kind in ("free", "marching"):
        net = TransportNet(**SMALL, kernel=kind)
        owners = [m for m in net.modules() if any(True for _ in m.parameters(recurse=False))]
        assert all(callable(getattr(m, "reset_parameters", None)) for m in owners)
        before = net.kernel.detach().clone()
        (net.marching if kind == "marching" else net).reset_parameters()
        assert not torch.equal(before, net.kernel.detach())
    net = TransportNet(**SMALL)
    state = net.state_dict()
    state["kernel"] = state.pop("taps")
    fresh = TransportNet(**SMALL)
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.kernel, net.kernel)


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


def test_fitted_transport_network_is_scaled_not_centred(make_data, stats) -> None:
    """Heights are divided by their rms only, so f(-h) = f(h) holds in physical units too."""
    module = SurrogateModule(
        architecture="transport", grid_shape=(16, 16), even=True, tau=0.0, **SMALL
    )
    trainer = L.Trainer(
        max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu",
    )  # fmt: skip
    data = make_data(stats)
    trainer.fit(module, datamodule=data)
    norm = module.model.input_norm
    moments = data.training_statistics()
    rms = (moments["roughness_mean"] ** 2 + moments["roughness_std"] ** 2) ** 0.5
    assert float(norm.mean) == 0.0
    assert float(norm.std) == pytest.approx(rms, rel=1e-6)
    model = module.eval().model
    x = 0.05 * torch.randn(4, 1, 16, 16)
    torch.testing.assert_close(model(-x), model(x))


def test_ordered_matmul_is_the_product_summed_in_order() -> None:
    x, w = torch.randn(5, 3), torch.randn(4, 3)
    by_hand = (x[:, None, 0] * w[:, 0] + x[:, None, 1] * w[:, 1]) + x[:, None, 2] * w[:, 2]
    assert torch.equal(ordered_matmul(x, w), by_hand)
    torch.testing.assert_close(ordered_matmul(x, w), x @ w.T)
    layer = OrderedLinear(3, 4)
    torch.testing.assert_close(layer(torch.randn(2, 5, 3)).shape, torch.Size([2, 5, 4]))


@pytest.mark.parametrize("monotone", [True, False])
def test_a_design_s_prediction_and_gradient_do_not_depend_on_threads_or_its_batch(
    monotone: bool,
) -> None:
    """A BLAS product in the head gave the rows at the end of a thread's share of the batch a
    different summation order: predictions and maps moved in the last bit with the thread
    count (so with the number of processes) and with the batch around a design."""
    torch.manual_seed(0)
    net = TransportNet(**SMALL, even=True, source=True, kernel="marching", monotone=monotone)
    with torch.no_grad():
        for p in net.head.parameters():
            p.normal_()
    x = torch.randn(203, 1, 16, 16)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            xg = x.clone().requires_grad_(True)
            y = net(xg)
            (grad,) = torch.autograd.grad(y.sum(), xg)
            with torch.no_grad():
                pieces = torch.cat([net(x[i : i + 29]) for i in range(0, len(x), 29)])
            results.append((y.detach(), grad, pieces))
    finally:
        torch.set_num_threads(threads)
    y1, g1, p1 = results[0]
    assert torch.equal(p1, y1)
    for y, g, p in results[1:]:
        assert torch.equal(y, y1)
        assert torch.equal(g, g1)
        assert torch.equal(p, y1)


# measured bit for bit on this machine's kernels (torch 2.13 CPU, oneDNN and MKL on AVX512);
# other CPUs may pick other kernels, where the paths agree to rounding only
SAME_KERNELS = torch.backends.cpu.get_cpu_capability() == "AVX512"


@pytest.mark.parametrize("batch", [1, 2, 7, 64])
@pytest.mark.parametrize("channels", [1, 2])
def test_inference_paths_give_the_numbers_of_the_autograd_path(batch: int, channels: int) -> None:
    """Without autograd the source stencil is nine multiply-adds and the inverse FFT keeps
    only the rows it needs; the predictions are those of conv2d and irfft2."""
    torch.manual_seed(batch + channels)
    net = TransportNet(**SMALL | {"channels": channels}, source=True, kernel="marching", even=True)
    net.eval()
    x = 3 * torch.randn(batch, 1, 16, 16)
    with torch.no_grad():
        fast, stencil = net(x), net.source(x)
    slow = net(x).detach()  # autograd on: conv2d and irfft2
    conv = torch.nn.functional.conv2d(x, net.source.weight.detach(), padding=1)
    torch.testing.assert_close(fast, slow, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(stencil, conv, rtol=1e-6, atol=1e-6)
    if SAME_KERNELS:
        assert torch.equal(fast, slow)
        assert torch.equal(stencil, conv)


def test_the_source_stencil_keeps_its_hooks_and_conv2d_where_it_must() -> None:
    net = TransportNet(**SMALL, source=True, kernel="marching", even=True)
    seen = []
    net.source.register_forward_hook(lambda module, inputs, output: seen.append(output.shape))
    with torch.no_grad():
        net(torch.randn(3, 1, 16, 16))
    assert seen == [(3, 2, 16, 16)]
    x = torch.randn(3, 1, 16, 16, dtype=torch.float64)  # float64: conv2d
    with torch.no_grad():
        out = net.double().source(x)
    torch.testing.assert_close(
        out, torch.nn.functional.conv2d(x, net.source.weight, padding=1), rtol=0, atol=0
    )
    assert isinstance(net.source, torch.nn.Conv2d)
