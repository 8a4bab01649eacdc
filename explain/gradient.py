"""Gradient-based attribution maps for a scalar regression output, all from one pass.

One forward pass with a hook on the chosen layer and one ``torch.autograd.grad`` call feed
every gradient-based method. Parameters get no gradients (``autograd.grad`` differentiates
only the requested tensors), so the model's ``.grad`` fields stay untouched. Maps are signed
and at the layer's resolution unless the method itself rectifies (LayerCAM).

Notation: ``A`` the layer activation ``(batch, K, h, w)``, ``G = dy/dA``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from data.errors import InputError

LAYER_METHODS = ("cam", "gradcam", "hirescam", "layercam", "gradcam++")
INPUT_METHODS = ("gradient",)
GRADIENT_METHODS = LAYER_METHODS + INPUT_METHODS


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name``; a one-line error lists the candidates otherwise."""
    modules = dict(model.named_modules())
    if name not in modules or name == "":
        names = ", ".join(n for n in modules if n) or "(none)"
        raise InputError(f"layer {name!r} not found; layers: {names}")
    return modules[name]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode; restore every submodule's own train/eval flag on exit."""
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        yield model
    finally:
        for module, mode in modes.items():
            module.training = mode


def _spatial_hook(store: dict[str, torch.Tensor], key: str, layer: str) -> Callable[..., None]:
    def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output)
            raise InputError(
                f"layer {layer!r} has no spatial output: expected (batch, channels, y, x), "
                f"got {shape}"
            )
        store[key] = output

    return hook


@contextlib.contextmanager
def _hooked(model: nn.Module, targets: dict[str, str]) -> Iterator[dict[str, torch.Tensor]]:
    """Store the output of layer ``targets[key]`` under ``key``, in eval mode."""
    modules = {key: find_layer(model, layer) for key, layer in targets.items()}
    store: dict[str, torch.Tensor] = {}
    handles = []
    with eval_mode(model):
        try:
            for key, module in modules.items():
                handles.append(
                    module.register_forward_hook(_spatial_hook(store, key, targets[key]))
                )
            yield store
        finally:
            for handle in handles:
                handle.remove()


@contextlib.contextmanager
def captured(model: nn.Module, layer: str) -> Iterator[dict[str, torch.Tensor]]:
    """Record ``layer``'s output under ``"activation"`` during a forward pass, in eval mode.

    The hook is removed and the model's train/eval mode restored on exit, also on error.
    """
    with _hooked(model, {"activation": layer}) as store:
        yield store


@contextlib.contextmanager
def captured_layers(model: nn.Module, layers: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Record several layers' outputs, keyed by layer name, during a forward pass, in eval mode.

    All names are resolved before any hook is registered; the hooks are removed and the
    model's train/eval mode restored on exit, also on error.
    """
    if not layers:
        raise InputError("layers is empty; give at least one module name with a spatial output")
    if len(set(layers)) != len(layers):
        raise InputError(f"layers must be distinct, got {list(layers)}")
    with _hooked(model, {layer: layer for layer in layers}) as store:
        yield store


def _check_methods(methods: Sequence[str]) -> None:
    unknown = [m for m in methods if m not in GRADIENT_METHODS]
    if unknown:
        raise InputError(f"unknown method(s) {unknown}; gradient methods: {list(GRADIENT_METHODS)}")


def _require_pooled_linear(grad: torch.Tensor, alpha: torch.Tensor) -> None:
    """CAM is defined only where the output is linear in the spatial mean of the layer."""
    spread = (grad - alpha).abs().amax()
    if spread > 1e-5 * alpha.abs().amax().clamp_min(1e-12):
        raise InputError(
            "method 'cam' needs the explained layer to feed a global-average-pool + linear "
            "head (its gradient varies across the map); use 'gradcam' or 'hirescam'"
        )


def _layer_map(method: str, act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """One map ``(batch, h, w)`` from activation and gradient ``(batch, K, h, w)``."""
    if method in ("cam", "gradcam"):
        # Grad-CAM: alpha_k = spatial mean of G_k. Behind global-average-pool + linear,
        # G_k is the constant w_k / (h w), so this map is CAM's sum_k w_k A_k per cell and
        # sums to y - bias (CAM = Grad-CAM = HiResCAM there).
        alpha = grad.mean(dim=(2, 3), keepdim=True)
        if method == "cam":
            _require_pooled_linear(grad, alpha)
        return (alpha * act).sum(dim=1)
    if method == "hirescam":
        return (grad * act).sum(dim=1)
    if method == "layercam":
        return torch.relu((torch.relu(grad) * act).sum(dim=1))
    # Grad-CAM++ closed form (assumes y = exp(S)); behaves like Grad-CAM on positive gradients
    g2, g3 = grad**2, grad**3
    denom = 2 * g2 + (act.sum(dim=(2, 3), keepdim=True) * g3)
    alpha = g2 / torch.where(denom != 0, denom, torch.ones_like(denom))
    weights = (alpha * torch.relu(grad)).sum(dim=(2, 3), keepdim=True)
    return (weights * act).sum(dim=1)


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
        the layer's resolution, ``gradient`` gives ``(batch, y, x)`` at input resolution.
    """
    _check_methods(methods)
    want_input = "gradient" in methods
    x = roughness.detach().requires_grad_(want_input)
    with captured(model, layer) as store, torch.enable_grad():
        y = model(x)
        act = store["activation"]
        inputs = [act, x] if want_input else [act]
        grads = torch.autograd.grad(y.sum(), inputs)
    maps = {m: _layer_map(m, act.detach(), grads[0]) for m in methods if m in LAYER_METHODS}
    if want_input:
        maps["gradient"] = grads[1][:, 0]
    return y.detach(), maps


def expand_baseline(baseline: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """``baseline`` on ``x``'s device and dtype, broadcast to ``x``'s shape; one-line error."""
    b = torch.as_tensor(baseline).detach().to(device=x.device, dtype=x.dtype)
    try:
        return b.expand_as(x)
    except RuntimeError:
        raise InputError(
            f"baseline of shape {tuple(b.shape)} does not broadcast to the input {tuple(x.shape)}"
        ) from None
