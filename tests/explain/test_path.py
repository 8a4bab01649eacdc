"""Gradient x input and integrated gradients: hand cases, captum, completeness, and the physics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from data.campaign import simulate_campaign
from data.differentiable import PhysicsTarget
from data.errors import InputError
from explain.api import Explainer, explain
from explain.baselines import blurred
from explain.gradient import gradient_maps
from explain.path import gauss_legendre, integrated_gradients

captum_attr = pytest.importorskip("captum.attr")


class Quadratic(nn.Module):
    """``f(x) = sum(w x + a x^2) + c``: its zero-baseline integrated gradient is ``w x + a x^2``."""

    def __init__(self, w: torch.Tensor, a: torch.Tensor, c: float = 0.3) -> None:
        super().__init__()
        self.w, self.a, self.c = nn.Parameter(w), nn.Parameter(a), c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.w * x[:, 0] + self.a * x[:, 0] ** 2).sum(dim=(1, 2)) + self.c


def quadratic_case() -> tuple[Quadratic, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    w, a = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    return Quadratic(w.double(), a.double()).eval(), torch.randn(3, 1, 4, 5, generator=g).double()


def test_quadrature_nodes_and_weights() -> None:
    alphas, weights = gauss_legendre(3)
    assert weights.sum().item() == pytest.approx(1.0)
    assert ((alphas > 0) & (alphas < 1)).all()
    # exact for polynomials up to degree 5 on [0, 1]
    assert (weights * alphas**5).sum().item() == pytest.approx(1 / 6)


def test_integrated_gradients_of_a_quadratic_by_hand() -> None:
    model, x = quadratic_case()
    f_x, ig, f_b = integrated_gradients(model, x, steps=2, chunk=4)
    expected = model.w * x[:, 0] + model.a * x[:, 0] ** 2
    torch.testing.assert_close(ig, expected.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(f_b, torch.full((3,), 0.3, dtype=torch.float64))
    # completeness: the map sums to f(x) - f(b) exactly for a quadratic
    torch.testing.assert_close(ig.sum(dim=(1, 2)), f_x - f_b, rtol=1e-12, atol=1e-12)


def test_integrated_gradients_with_a_field_baseline_is_complete() -> None:
    model, x = quadratic_case()
    b = blurred(x, 1.0)
    f_x, ig, f_b = integrated_gradients(model, x, b, steps=2)
    # along b + t (x - b): IG = (x - b) (w + a (x + b)) for a quadratic
    expected = (x - b)[:, 0] * (model.w + model.a * (x + b)[:, 0])
    torch.testing.assert_close(ig, expected.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ig.sum(dim=(1, 2)), f_x - f_b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("baseline", ["smooth-wall", "blurred"])
def test_integrated_gradients_against_captum(tiny_model: nn.Module, baseline: str) -> None:
    model = tiny_model.double()
    x = 0.05 * torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(3)).double()
    b = torch.zeros_like(x) if baseline == "smooth-wall" else blurred(x)
    _, ours, _ = integrated_gradients(model, x, b, steps=16, chunk=10)
    ig = captum_attr.IntegratedGradients(model)
    theirs = ig.attribute(x, baselines=b, n_steps=16, method="gausslegendre")
    torch.testing.assert_close(ours, theirs[:, 0], rtol=1e-5, atol=1e-9)


def test_gradient_times_input_against_captum(tiny_model: nn.Module) -> None:
    x = 0.05 * torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(4))
    _, maps = gradient_maps(tiny_model, x, "network.features", ["gradient-x-input"])
    theirs = captum_attr.InputXGradient(tiny_model).attribute(x.clone().requires_grad_(True))
    torch.testing.assert_close(
        maps["gradient-x-input"], theirs[:, 0].detach(), rtol=1e-5, atol=1e-9
    )


def test_integrated_gradients_of_the_physics_reproduce_the_contribution() -> None:
    """End to end: the exact ground truth is the physics' own zero-baseline IG."""
    ds = simulate_campaign(6, size=32, seed=3)
    h = torch.from_numpy(ds["roughness"].values).double()[:, None]
    f_x, ig, f_b = integrated_gradients(PhysicsTarget(size=32), h, steps=16, chunk=32)
    truth = ds["contribution"].values
    np.testing.assert_allclose(ig.numpy(), truth, rtol=0, atol=1e-6 * np.abs(truth).max())
    np.testing.assert_allclose(f_x.numpy(), ds["max_vorticity"].values, rtol=1e-6)
    np.testing.assert_array_equal(f_b.numpy(), 0.0)


def test_explainer_reports_completeness_per_design(tiny_model: nn.Module) -> None:
    x = 0.05 * torch.randn(5, 16, 16, generator=torch.Generator().manual_seed(5))
    ds = explain(
        tiny_model, x, methods=["integrated-gradients", "gradient-x-input"], batch_size=2,
        baseline="blurred", ig_steps=8, interpolation=["none"],
    )  # fmt: skip
    assert ds.attrs["baseline"] == "blurred"
    assert ds.attrs["ig_steps"] == 8
    assert ds["ig_residual"].shape == (5,)
    y = ds["prediction"].values
    f_b = tiny_model(blurred(x[:, None])).detach().numpy()
    total = (
        ds["attribution"]
        .sel(attribution_method="integrated-gradients")
        .sum(("y", "x"))
        .values[:, 0]
    )
    np.testing.assert_allclose(total - (y - f_b), ds["ig_residual"].values, atol=1e-6)
    # the unattributed remainder is carried explicitly: the blurred design's own prediction
    np.testing.assert_allclose(ds["ig_reference_prediction"].values, f_b, rtol=1e-6)
    assert ds.attrs["ig_residual"] == pytest.approx(np.abs(ds["ig_residual"].values).max())


def test_bad_arguments(tiny_model: nn.Module) -> None:
    x = torch.zeros(2, 1, 16, 16)
    with pytest.raises(InputError, match="steps"):
        integrated_gradients(tiny_model, x, steps=0)
    with pytest.raises(InputError, match="roughness must be"):
        integrated_gradients(tiny_model, x[0])
    with pytest.raises(InputError, match="unknown baseline 'wall'"):
        Explainer(tiny_model, (16, 16), ["integrated-gradients"], baseline="wall").maps(x)
