"""Guided backprop and Guided Grad-CAM: hand-computed cases, captum oracle and side effects."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from data.errors import InputError
from explain.gradient import gradient_maps
from explain.guided import guided_backprop, guided_gradcam, guided_relus
from explain.interpolation import upsample
from surrogate import RoughnessCNN

X = torch.tensor([[[[1.0, -2.0], [3.0, 4.0]]]])  # (1, 1, 2, 2)


class AsColumn(nn.Module):
    """captum wants ``(batch, outputs)``; our models give ``(batch,)``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[:, None]


class Raises(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")


class FunctionalRelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1, bias=False)
        self.fc = nn.Linear(4, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.conv(x)).flatten(1)).squeeze(1)


def relu_model(inplace: bool = False) -> nn.Sequential:
    """conv 1x1 (weight 2) -> ReLU -> flatten -> linear with per-cell weights (2, -1, -3, 5)."""
    conv = nn.Conv2d(1, 1, 1, bias=False)
    fc = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(2.0)
        fc.weight.copy_(torch.tensor([[2.0, -1.0, -3.0, 5.0]]))
    return nn.Sequential(conv, nn.ReLU(inplace=inplace), nn.Flatten(), fc, nn.Flatten(0))


def surrogate_cnn(seed: int = 0) -> RoughnessCNN:
    """A small random network with non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    model = RoughnessCNN(widths=(4, 8), kernel_size=(3, 3), coord_channels=True)
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.normal_(0.0, 0.3)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0.0, 0.3)
    return model


def no_hooks(model: nn.Module) -> bool:
    return all(
        not (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks) for m in model.modules()
    )


@pytest.mark.parametrize("inplace", [False, True])
def test_guided_backprop_by_hand(inplace: bool) -> None:
    # a = 2x = (2, -4, 6, 8), h = relu(a) = (2, 0, 6, 8), y = 4 - 0 - 18 + 40 = 26.
    # Gradient at h: g = (2, -1, -3, 5).
    # Plain:  dy/dx = 2 * g * (a > 0) = (4, 0, -6, 10).
    # Guided: 2 * relu(g) * (a > 0) = (4, 0, 0, 10); cell (1, 0) gets a negative
    # gradient through an active ReLU, and the guided map drops it.
    model = relu_model(inplace)
    y, guided = guided_backprop(model, X)
    assert y.item() == pytest.approx(26.0)
    torch.testing.assert_close(guided, torch.tensor([[[4.0, 0.0], [0.0, 10.0]]]))
    _, plain = gradient_maps(model, X, layer="0", methods=["gradient"])
    torch.testing.assert_close(plain["gradient"], torch.tensor([[[4.0, 0.0], [-6.0, 10.0]]]))


def test_guided_gradcam_by_hand() -> None:
    # Layer "1" (the ReLU): A = (2, 0, 6, 8), G = (2, -1, -3, 5), alpha = mean G = 3/4.
    # Grad-CAM = (1.5, 0, 4.5, 6) at input resolution already (no upsampling).
    # Guided Grad-CAM = (4, 0, 0, 10) * (1.5, 0, 4.5, 6) = (6, 0, 0, 60).
    y, cam = guided_gradcam(relu_model(), X, layer="1")
    assert y.item() == pytest.approx(26.0)
    torch.testing.assert_close(cam, torch.tensor([[[6.0, 0.0], [0.0, 60.0]]]))
    # Layer "0" (the conv): A = (2, -4, 6, 8), G = g * (A > 0) = (2, 0, -3, 5), alpha = 1.
    # relu(Grad-CAM) = (2, 0, 6, 8); times guided (4, 0, 0, 10) gives (8, 0, 0, 80).
    _, cam = guided_gradcam(relu_model(), X, layer="0")
    torch.testing.assert_close(cam, torch.tensor([[[8.0, 0.0], [0.0, 80.0]]]))


def test_negative_gradcam_is_rectified() -> None:
    # Negate the head: y = -26, g = (-2, 1, 3, -5), alpha = -3/4 at layer "1" -> Grad-CAM <= 0
    # everywhere, so the rectified factor (captum's convention) zeroes the whole map.
    model = relu_model()
    with torch.no_grad():
        model[3].weight.neg_()
    _, cam = guided_gradcam(model, X, layer="1")
    assert torch.equal(cam, torch.zeros(1, 2, 2))


@pytest.mark.filterwarnings("ignore:Setting backward hooks", "ignore:Input Tensor 0 did not")
def test_agrees_with_captum() -> None:
    """Independent oracle: captum's GuidedBackprop and GuidedGradCam (target=0)."""
    from captum.attr import GuidedBackprop, GuidedGradCam

    net = surrogate_cnn()
    wrapped = AsColumn(net).eval()  # captum does not switch to eval mode itself
    x = torch.randn(3, 1, 16, 16)
    y, guided = guided_backprop(net, x)
    torch.testing.assert_close(y, net(x).detach())
    expected = GuidedBackprop(wrapped).attribute(x.clone(), target=0)[:, 0]
    torch.testing.assert_close(guided, expected, rtol=1e-5, atol=1e-5)
    # captum's default interpolate_mode is "nearest"; both pass align_corners=False
    for mode in ("nearest", "bilinear"):
        _, cam = guided_gradcam(net, x, layer="features", interpolation=mode)
        oracle = GuidedGradCam(wrapped, net.features).attribute(
            x.clone(), target=0, interpolate_mode=mode
        )[:, 0]
        assert cam.shape == (3, 16, 16)
        torch.testing.assert_close(cam, oracle, rtol=1e-5, atol=1e-5, msg=mode)


def test_default_interpolation_is_bilinear() -> None:
    net = surrogate_cnn()
    x = torch.randn(2, 1, 16, 16)
    _, cam = guided_gradcam(net, x, layer="features")
    _, guided = guided_backprop(net, x)
    _, maps = gradient_maps(net, x, layer="features", methods=["gradcam"])
    expected = guided * upsample(torch.relu(maps["gradcam"]), (16, 16), "bilinear")
    torch.testing.assert_close(cam, expected)


def test_no_side_effects_and_mode_restored() -> None:
    model = surrogate_cnn().train()
    model.features.stage1.eval()  # a mixed state must come back as it was
    model.fc.weight.grad = torch.ones_like(model.fc.weight)
    bn = model.features.stage2[2]  # after the max pool and the first conv
    stats = bn.running_mean.clone()
    x = torch.randn(2, 1, 16, 16)
    guided_backprop(model, x)
    guided_gradcam(model, x, layer="features.stage2")
    assert model.fc.weight.grad.eq(1).all()
    assert all(p.grad is None for n, p in model.named_parameters() if n != "fc.weight")
    assert x.grad is None
    assert not x.requires_grad
    assert torch.equal(bn.running_mean, stats)  # ran in eval mode
    assert no_hooks(model)
    assert model.training
    assert model.features.stage2.training
    assert not model.features.stage1.training


def test_cleanup_after_an_error() -> None:
    model = Raises().train()
    with pytest.raises(RuntimeError, match="boom"):
        guided_backprop(model, X)
    assert no_hooks(model)
    assert model.training
    bad_shape = nn.Sequential(relu_model(), nn.Unflatten(0, (1, 1))).train()
    with pytest.raises(InputError, match=r"model output must be \(batch,\)"):
        guided_backprop(bad_shape, X)
    assert no_hooks(bad_shape)
    assert bad_shape.training
    with pytest.raises(RuntimeError, match="boom"), guided_relus(model):
        raise RuntimeError("boom")
    assert no_hooks(model)
    assert model.training


def test_later_plain_gradients_are_unchanged() -> None:
    model = surrogate_cnn()
    x = torch.randn(2, 1, 16, 16)
    y0, before = gradient_maps(model, x, layer="features")
    _, guided = guided_backprop(model, x)
    y1, after = gradient_maps(model, x, layer="features")
    assert torch.equal(y0, y1)
    for method, plain in before.items():
        assert torch.equal(plain, after[method]), method
    assert not torch.allclose(guided, before["gradient"])  # the guide did act


def test_functional_relu_is_not_guided() -> None:
    # The documented limitation: F.relu inside forward() keeps its plain gradient.
    model = FunctionalRelu()
    with torch.no_grad():
        model.conv.weight.fill_(2.0)
        model.fc.weight.copy_(torch.tensor([[2.0, -1.0, -3.0, 5.0]]))
    with pytest.warns(UserWarning, match=r"no nn\.ReLU modules"):
        _, guided = guided_backprop(model, X)
    torch.testing.assert_close(guided, torch.tensor([[[4.0, 0.0], [-6.0, 10.0]]]))


def test_bad_inputs() -> None:
    with pytest.raises(InputError, match=r"roughness must be \(batch, 1, y, x\)"):
        guided_backprop(relu_model(), X[0])
    with pytest.raises(InputError, match="unknown interpolation 'linear'"):
        guided_gradcam(relu_model(), X, layer="1", interpolation="linear")
    with pytest.raises(InputError, match="layer 'nope' not found"):
        guided_gradcam(relu_model(), X, layer="nope")
