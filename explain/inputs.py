"""The input checks every method shares: the roughness batch, the baseline, counts."""

from __future__ import annotations

import numpy as np
import torch

from data.errors import InputError


def roughness_batch(
    roughness: object, name: str = "roughness", channel_optional: bool = False
) -> torch.Tensor:
    """``roughness`` as a tensor ``(batch, 1, y, x)``, or a one-line error naming ``name``.

    A tensor keeps its dtype and device; anything else becomes float32 on the CPU. With
    ``channel_optional`` (the user-facing API), ``(batch, y, x)`` gains the channel; the
    methods themselves insist on the channel, so that ``x[0]`` of a batch is not taken for
    a batch of rows.
    """
    if isinstance(roughness, torch.Tensor):
        x = roughness
    else:
        x = torch.as_tensor(np.asarray(roughness), dtype=torch.float32)
    if channel_optional and x.dim() == 3:
        x = x[:, None]
    if x.dim() != 4 or x.shape[1] != 1:
        allowed = "(batch, y, x) or (batch, 1, y, x)" if channel_optional else "(batch, 1, y, x)"
        raise InputError(f"{name} must be {allowed}, got shape {tuple(x.shape)}")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        first = int(torch.nonzero(~torch.isfinite(x).flatten(1).all(1))[0, 0])
        raise InputError(f"{name} has NaN or Inf values (first in design {first})")
    return x


def check_model(model: torch.nn.Module, shape: tuple[int, int] | None = None) -> None:
    """Refuse a model whose weights hold NaN or Inf (every map would be NaN), or one that
    records the grid it was trained on (``grid_shape``) when ``shape`` differs from it."""
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise InputError(
                f"model weight {name!r} has NaN or Inf values; expected finite weights"
            )
    grid = tuple(int(n) for n in getattr(model, "grid_shape", None) or ())
    if shape is not None and grid and grid != (0, 0) and grid != tuple(shape):
        raise InputError(
            f"roughness grid is {shape[0]}x{shape[1]} but the model was trained on "
            f"{grid[0]}x{grid[1]}"
        )


def expand_baseline(baseline: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """``baseline`` on ``x``'s device and dtype, broadcast to ``x``'s shape; one-line error."""
    b = torch.as_tensor(baseline).detach().to(device=x.device, dtype=x.dtype)
    try:
        return b.expand_as(x)
    except RuntimeError:
        raise InputError(
            f"baseline of shape {tuple(b.shape)} does not broadcast to the input {tuple(x.shape)}"
        ) from None


def positive_int(name: str, value: object) -> int:
    """``value`` if it is an integer >= 1 (not a bool); a one-line error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return value
