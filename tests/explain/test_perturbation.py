"""Score-CAM and Poly-CAM against hand computations, a per-channel loop, and side effects."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from data.errors import InputError
from explain.perturbation import POLY_VARIANTS, poly_cam, score_cam
from surrogate import RoughnessCNN

X2 = torch.tensor([[[[-1.0, 2.0], [3.0, 0.0]]]])  # (1, 1, 2, 2)


def gap_model() -> nn.Sequential:
    """conv 1x1 (1, -2) -> ReLU -> global average pool -> linear (3, -5) + 0.5."""
    conv = nn.Conv2d(1, 2, 1, bias=False)
    fc = nn.Linear(2, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, -2.0]).view(2, 1, 1, 1))
        fc.weight.copy_(torch.tensor([[3.0, -5.0]]))
        fc.bias.fill_(0.5)
    return nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc, nn.Flatten(0))


class Shift(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.5


def two_scale_model() -> nn.Sequential:
    """conv 1x1 (1, -1) -> ReLU [layer "1", 4x4] -> max pool 2 -> conv 1x1 (1, 1) [layer "3",
    2x2] -> global average pool -> + 0.5.

    Layer "1" holds (x+, x-); layer "3" holds max(x+) + max(x-) per 2x2 block; f = its mean
    + 0.5, so f(0) = 0.5 and every weight (a difference of outputs) ignores the offset.
    """
    conv1 = nn.Conv2d(1, 2, 1, bias=False)
    conv2 = nn.Conv2d(2, 1, 1, bias=False)
    with torch.no_grad():
        conv1.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
        conv2.weight.copy_(torch.tensor([1.0, 1.0]).view(1, 2, 1, 1))
    return nn.Sequential(conv1, nn.ReLU(), nn.MaxPool2d(2), conv2, nn.AdaptiveAvgPool2d(1), Shift())


def test_score_cam_by_hand() -> None:
    # A0 = relu(x) = [[0, 2], [3, 0]], A1 = relu(-2x) = [[2, 0], [0, 0]]
    # f(x) = 3 mean(A0) - 5 mean(A1) + 0.5 = 3.75 - 2.5 + 0.5 = 1.75; f(0) = 0.5
    # H0 = A0 / 3 = [[0, 2/3], [1, 0]]: x H0 = [[0, 4/3], [3, 0]],
    #   f = 3 (13/3) / 4 + 0.5 = 3.75, alpha0 = 3.25
    # H1 = A1 / 2 = [[1, 0], [0, 0]]: x H1 = [[-1, 0], [0, 0]], A1 -> [[2, 0], [0, 0]],
    #   f = -5 (2/4) + 0.5 = -2, alpha1 = -2.5
    # map = relu(3.25 A0 - 2.5 A1) = relu([[-5, 6.5], [9.75, 0]])
    y, cam = score_cam(gap_model(), X2, layer="1")
    assert y.item() == pytest.approx(1.75)
    torch.testing.assert_close(cam, torch.tensor([[[0.0, 6.5], [9.75, 0.0]]]))


def test_score_cam_constant_channel_gets_no_weight() -> None:
    # x = [[1, 2], [3, 4]]: A1 = relu(-2x) = 0 is constant -> H1 = 0, alpha1 = f(0) - f(0) = 0
    # H0 = (x - 1) / 3: x H0 = [[0, 2/3], [2, 4]], f = 3 (20/3) / 4 + 0.5 = 5.5, alpha0 = 5
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    _, cam = score_cam(gap_model(), x, layer="1")
    torch.testing.assert_close(cam, 5.0 * x[:, 0])


def test_score_cam_baseline_by_hand() -> None:
    # b = 1: masked input b + H (x - b), x - b = [[-2, 1], [2, -1]]; f(b) = 3 + 0.5 = 3.5
    # H0 = [[0, 2/3], [1, 0]] -> [[1, 5/3], [3, 1]]: f = 3 (20/3) / 4 + 0.5 = 5.5, alpha0 = 2
    # H1 = [[1, 0], [0, 0]] -> [[-1, 1], [1, 1]]: A0 mean 3/4, A1 mean 2/4,
    #   f = 2.25 - 2.5 + 0.5 = 0.25, alpha1 = -3.25
    # map = relu(2 A0 - 3.25 A1) = relu([[-6.5, 4], [6, 0]])
    y, cam = score_cam(gap_model(), X2, layer="1", baseline=torch.ones(1, 1, 2, 2))
    assert y.item() == pytest.approx(1.75)  # the prediction itself does not depend on b
    torch.testing.assert_close(cam, torch.tensor([[[0.0, 4.0], [6.0, 0.0]]]))
    _, broadcast = score_cam(gap_model(), X2, layer="1", baseline=torch.tensor(1.0))
    torch.testing.assert_close(broadcast, cam)


def test_poly_cam_by_hand() -> None:
    # x is zero outside its top-left 2x2 block [[4, -2], [2, 0]]; only that block matters.
    # Deep layer "3": 6 in the top-left cell (4 + 2), 0 elsewhere; f(x) = 6/4 + .5 = 2, f(0) = .5
    # Below, f is quoted without the 0.5 offset, which cancels in every weight.
    # Its mask: bilinear 2 -> 4 gives outer(r, r) with r = (1, .75, .25, 0), so the block
    # is M = [[1, .75], [.75, .5625]] and 1 - M = [[0, .25], [.25, .4375]].
    #   x M       = [[4, -1.5], [1.5, 0]] -> 4 + 1.5 = 5.5, f = 1.375 -> w+ = 1.375
    #   x (1 - M) = [[0, -0.5], [0.5, 0]] -> 0.5 + 0.5 = 1, f = 0.25  -> w- = 1.25
    # Shallow layer "1": A0 = x+ (block [[4, 0], [2, 0]]), A1 = x- (block [[0, 2], [0, 0]]).
    #   M0 = x+/4: x M0 = [[4, 0], [1, 0]] -> f = 1, w+ = 1; x (1-M0) = [[0, -2], [1, 0]]
    #     -> 1 + 2 = 3, f = 0.75, w- = 0.75
    #   M1 = x-/2: x M1 = [[0, -2], [0, 0]] -> f = 0.5, w+ = 0.5; x (1-M1) = [[4, 0], [2, 0]]
    #     -> f = 1, w- = 0.5
    # S_deep = 6 wd at the top-left cell; S_shallow block = [[4 w0, 2 w1], [2 w0, 0]], 0 elsewhere.
    # LocalNorm: block mean m = (6 w0 + 2 w1) / 4, upsampled bilinearly = m outer(r, r);
    # Up(S_deep) = 6 wd outer(r, r), so the fused block is 6 wd S_shallow / m and 0 elsewhere.
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, :2, :2] = torch.tensor([[4.0, -2.0], [2.0, 0.0]])
    y, maps = poly_cam(two_scale_model(), x, layers=["1", "3"])
    assert y.item() == pytest.approx(2.0)

    def expected(wd: float, w0: float, w1: float) -> torch.Tensor:
        out = torch.zeros(1, 4, 4)
        block = torch.tensor([[4 * w0, 2 * w1], [2 * w0, 0.0]])
        out[0, :2, :2] = 6 * wd * block / ((6 * w0 + 2 * w1) / 4)
        return out

    torch.testing.assert_close(maps["polycam+"], expected(1.375, 1.0, 0.5))
    torch.testing.assert_close(maps["polycam-"], expected(1.25, 0.75, 0.5))
    torch.testing.assert_close(maps["polycam+-"], expected(2.625, 1.75, 1.0))
    # 6 wd * 4 / (6 w0 + 2 w1) for PCAM+: 33/7; block [[4, 1], [2, 0]] * 33/7
    assert maps["polycam+"][0, 0, 0].item() == pytest.approx(132 / 7)


def reference_score_cam(
    model: nn.Module, x: torch.Tensor, layer: nn.Module, baseline: torch.Tensor
) -> torch.Tensor:
    """Straightforward per-sample, per-channel Score-CAM, for comparison."""
    store: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: store.append(out))
    with torch.no_grad():
        model(x)
    handle.remove()
    acts = store[0]
    maps = []
    with torch.no_grad():
        for i in range(x.shape[0]):
            xi, bi = x[i : i + 1], baseline[i : i + 1]
            f_b = model(bi).item()
            total = torch.zeros(acts.shape[-2:])
            for k in range(acts.shape[1]):
                a = acts[i, k]
                up = F.interpolate(a[None, None], size=x.shape[-2:], mode="bilinear")[0, 0]
                lo, hi = up.min(), up.max()
                mask = (up - lo) / (hi - lo) if hi > lo else torch.zeros_like(up)
                alpha = model(bi + mask * (xi - bi)).item() - f_b
                total += alpha * a
            maps.append(torch.relu(total))
    return torch.stack(maps)


@pytest.fixture
def small_cnn() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = RoughnessCNN(widths=(4, 8), kernel_size=(3, 3))
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 1.5)
    return model.eval(), torch.randn(3, 1, 12, 12)


@pytest.mark.parametrize("chunk", [1, 7, 10_000])
def test_score_cam_matches_a_per_channel_loop(
    counting_model: type, small_cnn: tuple[nn.Module, torch.Tensor], chunk: int
) -> None:
    model, x = small_cnn
    baseline = 0.3 * torch.randn_like(x)
    layer = model.features.stage2
    expected = reference_score_cam(model, x, layer, baseline)
    counting = counting_model(model)
    y, cam = score_cam(counting, x, "inner.features.stage2", baseline=baseline, chunk=chunk)
    assert cam.shape == (3, 6, 6)
    torch.testing.assert_close(cam, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y, model(x), rtol=1e-5, atol=1e-6)
    # one hooked pass, then f(b) and the 3 x 8 masked inputs in passes of at most `chunk`
    rows = 3 + 3 * 8
    assert counting.sizes[0] == 3
    assert sum(counting.sizes[1:]) == rows
    assert len(counting.sizes) == 1 + math.ceil(rows / chunk)
    assert max(counting.sizes[1:]) <= chunk


def test_poly_cam_single_layer_is_score_cam(small_cnn: tuple[nn.Module, torch.Tensor]) -> None:
    model, x = small_cnn
    _, cam = score_cam(model, x, "features.stage2")
    _, maps = poly_cam(model, x, ["features.stage2"], variants=["polycam+"], chunk=5)
    torch.testing.assert_close(maps["polycam+"], cam, rtol=1e-5, atol=1e-6)


def test_poly_cam_chunk_independent(
    counting_model: type, small_cnn: tuple[nn.Module, torch.Tensor]
) -> None:
    model, x = small_cnn
    layers = ["features.stage1", "features.stage2"]
    _, whole = poly_cam(model, x, layers, chunk=10_000)
    counting = counting_model(model)
    _, chunked = poly_cam(counting, x, ["inner." + n for n in layers], chunk=7)
    for variant in POLY_VARIANTS:
        assert whole[variant].shape == (3, 12, 12)
        torch.testing.assert_close(chunked[variant], whole[variant], rtol=1e-5, atol=1e-5)
    rows = 3 + 2 * 3 * (4 + 8)  # f(b), then both signs for every channel of both layers
    assert len(counting.sizes) == 1 + math.ceil(rows / 7)
    # PCAM- alone needs no "+" passes
    counting.sizes.clear()
    poly_cam(counting, x, ["inner." + n for n in layers], variants=["polycam-"], chunk=7)
    assert sum(counting.sizes[1:]) == 3 + 3 * 12


def assert_untouched(model: nn.Module) -> None:
    assert all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks for m in model.modules())
    assert model.training
    assert not model[0].training


def test_no_side_effects() -> None:
    model = two_scale_model().train()
    model[0].eval()  # a mixed state must come back as it was
    x = torch.randn(2, 1, 4, 4)
    score_cam(model, x, "1")
    assert_untouched(model)
    poly_cam(model, x, ["1", "3"])
    assert_untouched(model)


@pytest.mark.parametrize(
    ("layers", "match"),
    [
        (["1", "6"], "no spatial output"),  # Flatten (batch, K); hooked after "1" fired
        (["1", "nope"], "layer 'nope' not found"),
        (["3", "1"], "ordered shallow -> deep"),
        ([], "layers is empty"),
        (["1", "1"], "distinct"),
    ],
)
def test_poly_cam_errors_leave_the_model_clean(layers: list[str], match: str) -> None:
    model = nn.Sequential(*two_scale_model(), nn.Flatten()).train()  # "6" is Flatten
    model[0].eval()
    with pytest.raises(InputError, match=match):
        poly_cam(model, torch.randn(1, 1, 4, 4), layers)
    assert_untouched(model)


def test_bad_arguments() -> None:
    x = torch.randn(1, 1, 4, 4)
    model = two_scale_model()
    with pytest.raises(InputError, match="no spatial output"):
        score_cam(nn.Sequential(*model, nn.Flatten()), x, "6")
    with pytest.raises(InputError, match="baseline of shape"):
        score_cam(model, x, "1", baseline=torch.zeros(1, 1, 3, 3))
    with pytest.raises(InputError, match="chunk"):
        score_cam(model, x, "1", chunk=0)
    with pytest.raises(InputError, match="roughness must be"):
        score_cam(model, x[0], "1")
    with pytest.raises(InputError, match="variant"):
        poly_cam(model, x, ["1"], variants=["polycam"])
