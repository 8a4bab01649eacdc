"""Gradient-based attribution maps for a scalar regression output, all from one pass.

One forward pass with a hook on the chosen layer and one ``torch.autograd.grad`` call feed
every gradient-based method. Parameters get no gradients (``autograd.grad`` differentiates
only the requested tensors), so the model's ``.grad`` fields stay untouched. Maps are signed
and at the layer's resolution unless the method itself rectifies (LayerCAM).

Notation: ``A`` the layer activation ``(batch, K, h, w)``, ``G = dy/dA``; ``x`` the input
``(batch, 1, y, x)`` and ``g = dy/dx``.

Each method is one formula in :data:`LAYER_FORMULAS` (from ``A`` and ``G``) or
:data:`INPUT_FORMULAS` (from ``x`` and ``g``); a new one is a function here plus a row in
:mod:`explain.catalogue`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from data.errors import InputError
from explain.hooks import captured

Formula = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _require_pooled_linear(grad: torch.Tensor, alpha: torch.Tensor) -> None:
    """CAM is defined only where the output is linear in the spatial mean of the layer."""
    spread = (grad - alpha).abs().amax()
    if spread > 1e-5 * alpha.abs().amax().clamp_min(1e-12):
        raise InputError(
            "method 'cam' needs the explained layer to feed a global-average-pool + linear "
            "head (its gradient varies across the map); use 'gradcam' or 'hirescam'"
        )


def gradcam(act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Grad-CAM: ``alpha_k`` = spatial mean of ``G_k``; map ``sum_k alpha_k A_k``.

    Behind global-average-pool + linear, ``G_k`` is the constant ``w_k / (h w)``, so this map
    is CAM's ``sum_k w_k A_k`` per cell and sums to ``y - bias`` (CAM = Grad-CAM = HiResCAM).
    """
    return (grad.mean(dim=(2, 3), keepdim=True) * act).sum(dim=1)


def cam(act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """CAM: Grad-CAM where the gradient is constant over the map (a pooled linear head)."""
    _require_pooled_linear(grad, grad.mean(dim=(2, 3), keepdim=True))
    return gradcam(act, grad)


def hirescam(act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """HiResCAM: ``sum_k G_k * A_k`` cell by cell."""
    return (grad * act).sum(dim=1)


def layercam(act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """LayerCAM: ``ReLU(sum_k ReLU(G_k) * A_k)``."""
    return torch.relu((torch.relu(grad) * act).sum(dim=1))


def gradcam_plus_plus(act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ closed form (assumes ``y = exp(S)``); like Grad-CAM on positive gradients."""
    g2, g3 = grad**2, grad**3
    denom = 2 * g2 + (act.sum(dim=(2, 3), keepdim=True) * g3)
    alpha = g2 / torch.where(denom != 0, denom, torch.ones_like(denom))
    weights = (alpha * torch.relu(grad)).sum(dim=(2, 3), keepdim=True)
    return (weights * act).sum(dim=1)


def input_gradient(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """The plain input gradient ``dy/dx`` ``(batch, y, x)``: a sensitivity per cell."""
    return grad[:, 0]


def gradient_times_input(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Gradient x input ``x dy/dx`` ``(batch, y, x)``: each cell's first-order contribution.

    The first-order Taylor term of ``f(x) - f(0)``: exact for a model linear in the heights,
    and the zero-baseline integrated gradient's one-point estimate otherwise.
    """
    return (x * grad)[:, 0]


LAYER_FORMULAS: dict[str, Formula] = {
    "cam": cam,
    "gradcam": gradcam,
    "hirescam": hirescam,
    "layercam": layercam,
    "gradcam++": gradcam_plus_plus,
}
INPUT_FORMULAS: dict[str, Formula] = {
    "gradient": input_gradient,
    "gradient-x-input": gradient_times_input,
}
LAYER_METHODS = tuple(LAYER_FORMULAS)
INPUT_METHODS = tuple(INPUT_FORMULAS)
GRADIENT_METHODS = LAYER_METHODS + INPUT_METHODS


def _check_methods(methods: Sequence[str]) -> None:
    known = [*LAYER_FORMULAS, *INPUT_FORMULAS]
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise InputError(f"unknown method(s) {unknown}; gradient methods: {known}")


def gradient_maps(
    model: nn.Module, roughness: torch.Tensor, layer: str, methods: Sequence[str] = GRADIENT_METHODS
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Prediction and the requested maps from one forward and one backward pass.

    Args:
        model: Any module mapping ``(batch, 1, y, x)`` to ``(batch,)``.
        roughness: Input heights ``(batch, 1, y, x)``.
        layer: Module name of the layer to explain (``model.named_modules()``).
        methods: Any of :data:`GRADIENT_METHODS`.

    Returns:
        ``(prediction (batch,), {method: map})``; layer methods give ``(batch, h, w)`` at
        the layer's resolution, input methods ``(batch, y, x)`` at input resolution.
    """
    _check_methods(methods)
    want_input = any(m in INPUT_FORMULAS for m in methods)
    # the input always takes part in the graph, so that a layer before the first weights
    # (an input normaliser) has a gradient too
    x = roughness.detach().requires_grad_(True)
    with captured(model, layer) as store, torch.enable_grad():
        y = model(x)
        act = store["activation"]
        inputs = [act, x] if want_input else [act]
        grads = torch.autograd.grad(y.sum(), inputs)
    maps = {}
    for method in methods:
        if method in LAYER_FORMULAS:
            maps[method] = LAYER_FORMULAS[method](act.detach(), grads[0])
        else:
            maps[method] = INPUT_FORMULAS[method](x.detach(), grads[1])
    return y.detach(), maps
