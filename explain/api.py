"""``explain(model, roughness, ...)``: batched maps for many designs as an xarray Dataset."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import xarray as xr
from torch import nn

from explain.interpolation import upsample
from explain.methods import LAYER_METHODS, gradient_maps

DEFAULT_METHODS = ("cam", "hirescam", "layercam")


def spatial_layers(model: nn.Module, shape: tuple[int, int]) -> list[tuple[str, tuple[int, int]]]:
    """``(name, (h, w))`` of every module with a spatial output, in completion order."""
    found: list[tuple[str, tuple[int, int]]] = []
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue

        def hook(_m: nn.Module, _i: object, out: object, name: str = name) -> None:
            if isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[2] * out.shape[3] > 1:
                found.append((name, (int(out.shape[2]), int(out.shape[3]))))

        handles.append(module.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 1, *shape))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return found


def default_layer(model: nn.Module, shape: tuple[int, int]) -> str:
    """The last module, outermost first, whose output still has a spatial map."""
    return spatial_layers(model, shape)[-1][0]


def _as_batch(roughness: np.ndarray | torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(roughness), dtype=torch.float32)
    return x[:, None] if x.dim() == 3 else x


def explain(
    model: nn.Module,
    roughness: np.ndarray | torch.Tensor,
    methods: Sequence[str] = DEFAULT_METHODS,
    layer: str | None = None,
    interpolation: Sequence[str] = ("none", "bilinear"),
    batch_size: int = 64,
) -> xr.Dataset:
    """Attribution maps of ``model``'s prediction for each design.

    Args:
        model: Any module mapping roughness ``(batch, 1, y, x)`` in delta to ``(batch,)``.
        roughness: Heights ``(sample, y, x)`` or ``(sample, 1, y, x)`` in delta.
        methods: Gradient-based methods (see :mod:`explain.methods`).
        layer: Module name to explain; default the last module with a spatial output.
        interpolation: Modes of :func:`explain.interpolation.upsample`.
        batch_size: Designs per forward/backward pass.

    Returns:
        Dataset with ``prediction(sample)``, ``attribution(sample, method, interpolation, y, x)``
        and, for layer methods, ``attribution_native(sample, layer_method, y_layer, x_layer)``.
        Maps are signed (LayerCAM rectifies by definition), in the output's units per cell.
        ``method`` is also a keyword of ``Dataset.sel``: select with a dict,
        ``ds.sel({"method": "cam"})``.
    """
    x = _as_batch(roughness)
    size = (int(x.shape[-2]), int(x.shape[-1]))
    layer = layer or default_layer(model, size)
    preds, full, native = [], [], []
    for start in range(0, len(x), batch_size):
        y, maps = gradient_maps(model, x[start : start + batch_size], layer, methods)
        preds.append(y)
        full.append(
            torch.stack(
                [
                    torch.stack([upsample(maps[m], size, mode) for mode in interpolation], 1)
                    for m in methods
                ],
                1,
            )
        )
        layer_methods = [m for m in methods if m in LAYER_METHODS]
        if layer_methods:
            native.append(torch.stack([maps[m] for m in layer_methods], 1))
    ds = xr.Dataset(
        {
            "prediction": (
                "sample",
                torch.cat(preds).numpy(),
                {"units": "U_e/delta", "long_name": "surrogate max vorticity"},
            ),
            "attribution": (
                ("sample", "method", "interpolation", "y", "x"),
                torch.cat(full).numpy(),
                {"units": "U_e/delta", "long_name": "attribution per input cell"},
            ),
        },
        coords={
            "sample": np.arange(len(x)),
            "method": list(methods),
            "interpolation": list(interpolation),
        },
        attrs={
            "layer": layer,
            "relu": "false",
            "normalised": "false",
            "alignment": "cell centres, align_corners=False",
        },
    )
    if native:
        ds["attribution_native"] = (
            ("sample", "layer_method", "y_layer", "x_layer"),
            torch.cat(native).numpy(),
            {"units": "U_e/delta", "long_name": "attribution per layer cell"},
        )
        ds = ds.assign_coords(layer_method=[m for m in methods if m in LAYER_METHODS])
    return ds
