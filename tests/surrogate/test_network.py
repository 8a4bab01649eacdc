"""RoughnessCNN shapes, the exact CAM identity of the gap head, and the coordinate channels."""

from __future__ import annotations

import pytest
import torch

from surrogate.network import CoordChannels, RoughnessCNN


def _features(network: RoughnessCNN, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Network output and the hooked output of ``network.features`` (the last stage)."""
    captured: list[torch.Tensor] = []
    handle = network.features.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        with torch.no_grad():
            out = network(x)
    finally:
        handle.remove()
    assert len(captured) == 1
    return out, captured[0]


def _trained_statistics(network: RoughnessCNN, size: int) -> RoughnessCNN:
    """A few train-mode passes so BatchNorm running statistics are not the identity."""
    network.train()
    with torch.no_grad():
        for _ in range(3):
            network(torch.randn(4, 1, size, size) * 2 + 0.5)
    return network.eval()


@pytest.mark.parametrize(
    ("widths", "convs", "kernel", "head", "coords", "stem"),
    [
        ((4,), 1, (3, 3), "gap", False, 1),
        ((4, 8), 2, (3, 5), "gap", True, 1),
        ((4, 8, 8), 1, (3, 5), "max", False, 2),
        ((2, 4, 4, 8), 2, (3, 3), "max", True, 2),
        ((3, 5, 7), 3, (5, 3), "gap", False, 2),
    ],
)
def test_output_shape_is_batch(
    widths: tuple[int, ...],
    convs: int,
    kernel: tuple[int, int],
    head: str,
    coords: bool,
    stem: int,
) -> None:
    torch.manual_seed(0)
    network = RoughnessCNN(
        widths=widths,
        convs_per_stage=convs,
        kernel_size=kernel,
        head=head,
        coord_channels=coords,
        stem_stride=stem,
    ).eval()
    out, features = _features(network, torch.randn(3, 1, 32, 32))
    assert out.shape == (3,)
    assert torch.isfinite(out).all()
    assert features.shape[1] == widths[-1]
    convs_found = [m for m in network.features.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs_found) == len(widths) * convs
    assert all(c.kernel_size == kernel for c in convs_found)
    assert convs_found[0].in_channels == (3 if coords else 1)
    assert convs_found[0].stride == (stem, stem)


@pytest.mark.parametrize(
    ("widths", "stem", "side"),
    [((2, 2, 2, 2), 1, 8), ((2, 2, 2, 2), 2, 4), ((2, 2), 1, 32), ((2, 2, 2), 2, 8)],
)
def test_last_feature_map_resolution_for_64x64(
    widths: tuple[int, ...], stem: int, side: int
) -> None:
    network = RoughnessCNN(widths=widths, convs_per_stage=1, stem_stride=stem).eval()
    _, features = _features(network, torch.zeros(1, 1, 64, 64))
    assert features.shape == (1, widths[-1], side, side)


def test_long_kernel_keeps_resolution() -> None:
    network = RoughnessCNN(widths=(2, 2), convs_per_stage=2, kernel_size=(3, 7)).eval()
    _, features = _features(network, torch.zeros(1, 1, 16, 24))
    assert features.shape == (1, 2, 8, 12)


def test_gap_head_cam_identity() -> None:
    """mean over space of M = sum_k w_k A_k, plus the bias, is exactly the output."""
    torch.manual_seed(1)
    network = _trained_statistics(
        RoughnessCNN(widths=(4, 6, 8), convs_per_stage=2, head="gap", dropout=0.5), 32
    )
    x = torch.randn(5, 1, 32, 32)
    out, A = _features(network, x)
    assert A.shape == (5, 8, 8, 8)
    assert (A >= 0).all()  # post-ReLU
    weights, bias = network.fc.weight[0].detach(), network.fc.bias.detach()
    cam = (weights.view(1, -1, 1, 1) * A).sum(dim=1)
    expected = cam.mean(dim=(1, 2)) + bias
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    # Not a constant network: the five inputs give different outputs.
    assert out.std() > 1e-4


def test_max_head_pools_with_max() -> None:
    torch.manual_seed(2)
    network = _trained_statistics(RoughnessCNN(widths=(4, 8), head="max"), 16)
    out, A = _features(network, torch.randn(4, 1, 16, 16))
    weights, bias = network.fc.weight[0].detach(), network.fc.bias.detach()
    expected = A.amax(dim=(2, 3)) @ weights + bias
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    as_if_mean = A.mean(dim=(2, 3)) @ weights + bias
    assert not torch.allclose(out, as_if_mean, atol=1e-3)


def test_dropout_only_in_training() -> None:
    torch.manual_seed(3)
    network = RoughnessCNN(widths=(4, 8), dropout=0.9).eval()
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(network(x), network(x), atol=0, rtol=0)
        network.train()
        assert not torch.allclose(network(x), network(x))


def test_coord_channels_values() -> None:
    x = torch.randn(2, 1, 5, 7)
    out = CoordChannels()(x)
    assert out.shape == (2, 3, 5, 7)
    torch.testing.assert_close(out[:, :1], x, atol=0, rtol=0)
    ys, xs = out[:, 1], out[:, 2]
    assert torch.all(ys[:, 0, :] == -1)
    assert torch.all(ys[:, -1, :] == 1)
    assert torch.all(xs[:, :, 0] == -1)
    assert torch.all(xs[:, :, -1] == 1)
    torch.testing.assert_close(ys[0, :, 3], torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]))
    torch.testing.assert_close(xs[1, 2], torch.linspace(-1, 1, 7))
    # y varies along rows only, x along columns only
    assert torch.all(ys == ys[:, :, :1])
    assert torch.all(xs == xs[:, :1, :])


def test_coord_channels_follow_dtype() -> None:
    out = CoordChannels()(torch.zeros(1, 1, 3, 3, dtype=torch.float64))
    assert out.dtype == torch.float64


@pytest.mark.parametrize("head", ["avg", "GAP", "", "attention"])
def test_invalid_head_raises(head: str) -> None:
    with pytest.raises(ValueError, match="head must be 'gap' or 'max'"):
        RoughnessCNN(widths=(2,), head=head)  # type: ignore[arg-type]


@pytest.mark.parametrize("widths", [(), (4, 0), (-1,)])
def test_invalid_widths_raise(widths: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="widths must be positive"):
        RoughnessCNN(widths=widths)
