"""Guided backpropagation and Guided Grad-CAM. NOT RECOMMENDED as explanations.

They are kept only to show that the model-randomisation sanity checks (Adebayo et al. 2018)
catch them. Guided backpropagation gates the backward signal by the sign of the forward
activation *and* of the incoming gradient. Its map therefore hardly changes when the upper
layers are re-initialised. It behaves like an edge detector of the roughness field, not like
an account of the prediction. Guided Grad-CAM inherits this through its guided factor.

Guided backpropagation (Springenberg et al. 2015) is the gradient of the raw scalar output
with respect to the input, where each ``nn.ReLU`` module's backward also zeroes negative
incoming gradients: ``relu(g) * (a > 0)`` instead of ``g * (a > 0)``. This is the convention
of ``captum.attr.GuidedBackprop``, whose ``relu(g * (a > 0))`` is the same thing. Temporary
forward hooks on ``nn.ReLU`` modules pass each output through an identity whose backward clamps
the gradient at zero. This also works for ``nn.ReLU(inplace=True)`` because the identity copies
its input.

Limitation: only ``nn.ReLU`` *modules* are modified. ReLUs called functionally inside
``forward()`` (``F.relu``, ``torch.relu``, ``Tensor.relu_``) and other activations
(``ReLU6``, ``LeakyReLU``, ``GELU``) keep their plain gradient. This is captum's limitation too.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from data.errors import InputError
from explain.gradient import gradient_maps
from explain.hooks import forward_hooks
from explain.inputs import roughness_batch
from explain.interpolation import MODES, upsample


class _PositiveGradient(torch.autograd.Function):
    """Identity forward; the backward lets only the non-negative part of the gradient through."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        # A copy, not ``x`` itself. Then a later in-place op (another inplace ReLU) cannot
        # modify the output of a custom Function, which autograd forbids.
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.clamp_min(0)


def _gate(_module: nn.Module, _inputs: object, output: torch.Tensor) -> torch.Tensor:
    return _PositiveGradient.apply(output)


@contextlib.contextmanager
def guided_relus(model: nn.Module) -> Iterator[int]:
    """Guide every ``nn.ReLU`` module of ``model``, in eval mode; yields how many were hooked.

    The hooks are removed and every module's train/eval mode restored on exit, also on error.
    """
    relus = [(module, _gate) for module in model.modules() if isinstance(module, nn.ReLU)]
    with forward_hooks(model, relus) as hooked:
        yield hooked


def guided_backprop(model: nn.Module, roughness: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Prediction and guided-backpropagation map. NOT RECOMMENDED; see the module docstring.

    Args:
        model: Any module mapping ``(batch, 1, y, x)`` to ``(batch,)``. Only its ``nn.ReLU``
            modules are guided.
        roughness: Input heights ``(batch, 1, y, x)``, in units of delta.

    Returns:
        ``(prediction (batch,), map (batch, y, x))``. The prediction is in the model's output
        units (``U_e/delta``), computed in eval mode. The map is signed and at input resolution,
        in output units per unit of height. It is signed because the weights below the first
        ReLU are not gated.
    """
    x = roughness_batch(roughness).detach().requires_grad_(True)
    with guided_relus(model) as hooked, torch.enable_grad():
        if not hooked:
            warnings.warn(
                "model has no nn.ReLU modules: guided backprop equals the plain gradient",
                stacklevel=2,
            )
        y = model(x)
        if y.shape != (x.shape[0],):
            raise InputError(
                f"model output must be (batch,) = ({x.shape[0]},); got {tuple(y.shape)}"
            )
        (grad,) = torch.autograd.grad(y.sum(), x)
    return y.detach(), grad[:, 0]


def guided_gradcam(
    model: nn.Module, roughness: torch.Tensor, layer: str, interpolation: str = "bilinear"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prediction and Guided Grad-CAM map. NOT RECOMMENDED; see the module docstring.

    The map is ``guided_backprop * Up(relu(gradcam(layer)))``, as in Selvaraju et al. 2017 and
    ``captum.attr.GuidedGradCam``. Grad-CAM is rectified *before* upsampling, like captum (its
    ``relu_attributions=True``), so captum can serve as an oracle. Captum upsamples with
    ``nearest`` by default. Here the default is ``bilinear``, as in the paper. ``bicubic`` can
    overshoot slightly below zero near sharp edges of the rectified map.

    Args:
        model: Any module mapping ``(batch, 1, y, x)`` to ``(batch,)``.
        roughness: Input heights ``(batch, 1, y, x)``, in units of delta.
        layer: Module name of the layer whose Grad-CAM is used (``model.named_modules()``).
        interpolation: One of :data:`explain.interpolation.MODES`.

    Returns:
        ``(prediction (batch,), map (batch, y, x))`` at input resolution. The map is signed
        through the guided factor and has no physical unit.
    """
    if interpolation not in MODES:
        raise InputError(f"unknown interpolation {interpolation!r}; choose from {list(MODES)}")
    roughness = roughness_batch(roughness)
    _, maps = gradient_maps(model, roughness, layer, methods=["gradcam"])
    prediction, guided = guided_backprop(model, roughness)
    cam = upsample(torch.relu(maps["gradcam"]), tuple(guided.shape[-2:]), interpolation)
    return prediction, guided * cam
