"""Which layers of a model can be explained: candidates, the default and Poly-CAM's pyramid."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from data.errors import InputError
from explain.batching import model_device
from explain.hooks import find_layer, forward_hooks

__all__ = [
    "LayerInfo",
    "candidate_layers",
    "default_layer",
    "feature_layers",
    "find_layer",
    "pyramid_layers",
    "spatial_layers",
]


class LayerInfo(NamedTuple):
    """A module with a spatial output: name, channels and map size for a given input grid."""

    name: str
    channels: int
    height: int
    width: int
    has_parameters: bool

    def on_grid(self, shape: tuple[int, int]) -> bool:
        """Whether each cell of this map covers a whole, square-scaled block of the input grid.

        Only then can a layer map be drawn on the roughness (``interpolation.py``); a layer of
        a network that maps the patch onto another region (the wake, say) is not.
        """
        fy, ry = divmod(shape[0], self.height)
        fx, rx = divmod(shape[1], self.width)
        return ry == rx == 0 and fy == fx


def candidate_layers(model: nn.Module, shape: tuple[int, int]) -> list[LayerInfo]:
    """Every module whose output is a ``(batch, C, h, w)`` map with ``h * w > 1``.

    Listed in the order the modules finish during a forward pass of a zero field of
    ``shape``, so a container comes right after its last child.
    """
    found: list[LayerInfo] = []

    def recorder(name: str, own: bool):
        def hook(_m: nn.Module, _i: object, out: object) -> None:
            if isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[2] * out.shape[3] > 1:
                found.append(LayerInfo(name, *map(int, out.shape[1:]), has_parameters=own))

        return hook

    pairs = [
        (module, recorder(name, any(True for _ in module.parameters(recurse=False))))
        for name, module in model.named_modules()
        if name
    ]
    with forward_hooks(model, pairs), torch.no_grad():
        model(torch.zeros(1, 1, *shape, device=model_device(model)))
    return found


def spatial_layers(model: nn.Module, shape: tuple[int, int]) -> list[tuple[str, tuple[int, int]]]:
    """``(name, (h, w))`` of every module with a spatial output, in completion order."""
    return [(info.name, (info.height, info.width)) for info in candidate_layers(model, shape)]


def default_layer(model: nn.Module, shape: tuple[int, int]) -> str:
    """The last module, outermost first, whose output is a map on the input grid."""
    layers = [info for info in candidate_layers(model, shape) if info.on_grid(shape)]
    if not layers:
        raise InputError(
            "the model has no layer with a spatial (batch, C, y, x) output on the input grid"
        )
    return layers[-1].name


def feature_layers(model: nn.Module, shape: tuple[int, int]) -> list[LayerInfo]:
    """The candidate layers on the input grid from the first module with parameters on.

    Modules that finish before it (an input normaliser, appended coordinate channels) are
    not features: their output does not depend on the model's weights.
    """
    layers = [info for info in candidate_layers(model, shape) if info.on_grid(shape)]
    first = next((i for i, info in enumerate(layers) if info.has_parameters), 0)
    return layers[first:]


def pyramid_layers(model: nn.Module, shape: tuple[int, int]) -> list[str]:
    """Poly-CAM's layers, shallow to deep: the last module at each resolution.

    That is the module just before each downsampling (and the deepest map), among the
    :func:`feature_layers`.
    """
    last_at: dict[tuple[int, int], str] = {}
    for info in feature_layers(model, shape):
        last_at.pop((info.height, info.width), None)
        last_at[(info.height, info.width)] = info.name
    return list(last_at.values())
