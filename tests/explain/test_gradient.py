"""Gradient-based maps against hand-computed cases, the gap-head identity and side effects."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from data.errors import InputError
from explain.gradient import gradient_maps
from explain.hooks import captured
from surrogate import PhysicalSurrogate, RoughnessCNN

X = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])  # (1, 1, 2, 2)


def gap_model() -> nn.Sequential:
    """conv 1x1 (weights 1, -2) -> ReLU -> global average pool -> linear (3, 5) + 0.5."""
    conv = nn.Conv2d(1, 2, 1, bias=False)
    fc = nn.Linear(2, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, -2.0]).view(2, 1, 1, 1))
        fc.weight.copy_(torch.tensor([[3.0, 5.0]]))
        fc.bias.fill_(0.5)
    return nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc, nn.Flatten(0))


def dense_model() -> nn.Sequential:
    """conv 1x1 (weight 1) -> flatten -> linear with per-cell weights (1, -1, 2, 0)."""
    conv = nn.Conv2d(1, 1, 1, bias=False)
    fc = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        fc.weight.copy_(torch.tensor([[1.0, -1.0, 2.0, 0.0]]))
    return nn.Sequential(conv, nn.Flatten(), fc, nn.Flatten(0))


def test_gap_model_maps_by_hand() -> None:
    # A0 = x, A1 = relu(-2x) = 0; y = 3 mean(x) + 0.5 = 8; G0 = 3/4, G1 = 5/4 everywhere
    y, maps = gradient_maps(gap_model(), X, layer="1")
    assert y.item() == pytest.approx(8.0)
    expected = 0.75 * X[:, 0]
    for method in ("cam", "gradcam", "hirescam", "layercam"):
        torch.testing.assert_close(maps[method], expected, msg=method)
    assert maps["cam"].sum().item() == pytest.approx(8.0 - 0.5)  # prediction - bias
    # Grad-CAM++: alpha0 = G^2 / (2 G^2 + sum(A0) G^3) = 0.5625 / 5.34375; w0 = 4 alpha0 G
    w0 = 4 * (0.5625 / 5.34375) * 0.75
    torch.testing.assert_close(maps["gradcam++"], w0 * X[:, 0])
    # d y / d x = 3/4 (channel 1 is inactive)
    torch.testing.assert_close(maps["gradient"], torch.full((1, 2, 2), 0.75))


def test_position_dependent_head_separates_the_methods() -> None:
    # A = x, G = [[1, -1], [2, 0]], y = 1 - 2 + 6 = 5
    y, maps = gradient_maps(
        dense_model(), X, layer="0", methods=["gradcam", "hirescam", "layercam"]
    )
    assert y.item() == pytest.approx(5.0)
    torch.testing.assert_close(maps["hirescam"], torch.tensor([[[1.0, -2.0], [6.0, 0.0]]]))
    assert maps["hirescam"].sum().item() == pytest.approx(5.0)
    torch.testing.assert_close(maps["gradcam"], 0.5 * X[:, 0])
    torch.testing.assert_close(maps["layercam"], torch.tensor([[[1.0, 0.0], [6.0, 0.0]]]))
    with pytest.raises(InputError, match="global-average-pool"):
        gradient_maps(dense_model(), X, layer="0", methods=["cam"])


def test_surrogate_gap_head_identity() -> None:
    torch.manual_seed(0)
    model = PhysicalSurrogate(RoughnessCNN(widths=(4, 8), kernel_size=(3, 5), head="gap"))
    model.input_norm.set_statistics(0.01, 0.05)
    model.target_norm.set_statistics(0.12, 0.04)
    x = 0.05 * torch.randn(3, 1, 16, 16)
    y, maps = gradient_maps(
        model, x, layer="network.features", methods=["cam", "gradcam", "hirescam"]
    )
    torch.testing.assert_close(maps["cam"], maps["hirescam"], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(maps["gradcam"], maps["hirescam"], rtol=1e-5, atol=1e-7)
    bias = model.target_norm.std * model.network.fc.bias + model.target_norm.mean
    torch.testing.assert_close(maps["cam"].sum(dim=(1, 2)), y - bias, rtol=1e-5, atol=1e-6)
    assert maps["cam"].shape == (3, 8, 8)


def test_no_side_effects_and_mode_restored() -> None:
    model = gap_model().train()
    model[0].eval()  # a mixed state must come back as it was
    model[4].weight.grad = torch.ones_like(model[4].weight)
    gradient_maps(model, X, layer="1")
    assert model[4].weight.grad.eq(1).all()
    assert model[0].weight.grad is None
    assert all(not m._forward_hooks for m in model.modules())
    assert model.training
    assert not model[0].training


def test_cleanup_after_an_error() -> None:
    model = gap_model().train()
    with pytest.raises(InputError, match="no spatial output"):
        gradient_maps(model, X, layer="3")  # Flatten: (batch, K)
    assert all(not m._forward_hooks for m in model.modules())
    assert model.training
    with pytest.raises(RuntimeError, match="boom"), captured(model, "1"):
        raise RuntimeError("boom")
    assert all(not m._forward_hooks for m in model.modules())
    assert model.training


def test_bad_method_and_layer() -> None:
    with pytest.raises(InputError, match="unknown method"):
        gradient_maps(gap_model(), X, layer="1", methods=["smoothgrad"])
    with pytest.raises(InputError, match="layer 'nope' not found"):
        gradient_maps(gap_model(), X, layer="nope")


def test_agrees_with_captum() -> None:
    """Independent oracle: captum's LayerGradCam and channel-summed LayerGradientXActivation."""
    from captum.attr import LayerGradCam, LayerGradientXActivation

    torch.manual_seed(1)
    model = PhysicalSurrogate(RoughnessCNN(widths=(4, 8, 8), kernel_size=(3, 5), head="max"))
    model.input_norm.set_statistics(0.0, 0.05)
    model.target_norm.set_statistics(0.1, 0.04)
    model.eval()
    x = 0.05 * torch.randn(4, 1, 16, 16)
    layer = model.network.features.stage2
    _, maps = gradient_maps(
        model, x, layer="network.features.stage2", methods=["gradcam", "hirescam"]
    )
    gradcam = LayerGradCam(model, layer).attribute(x, relu_attributions=False)[:, 0]
    gxa = LayerGradientXActivation(model, layer).attribute(x).sum(dim=1)
    torch.testing.assert_close(maps["gradcam"], gradcam, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(maps["hirescam"], gxa, rtol=1e-5, atol=1e-5)
