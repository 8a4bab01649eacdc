"""Null references: maps made from the roughness alone, with no model at all.

A method earns trust only by beating maps anyone could draw without the surrogate: a fixed
random field, the height magnitude ``|h|`` and the height's edges ``|∇h|`` (the pattern guided
backpropagation is known to reproduce). They go through the same scoring as every method and
are never recommended; with ground truth, a method must beat all three on agreement with the
truth to be eligible (``docs/evaluation.md``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_map(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """One uniform random field on the grid, the same for every design ``(batch, y, x)``."""
    generator = torch.Generator().manual_seed(seed)
    field = torch.rand(x.shape[-2:], generator=generator, dtype=torch.float64)
    return field.to(x.device, x.dtype).expand(x.shape[0], -1, -1)


def height_magnitude(x: torch.Tensor) -> torch.Tensor:
    """``|h|`` ``(batch, y, x)`` in delta."""
    return x[:, 0].abs()


def height_edges(x: torch.Tensor) -> torch.Tensor:
    """``|∇h|`` ``(batch, y, x)`` by central differences (one-sided at the border), delta/cell."""
    h = F.pad(x, (1, 1, 1, 1), mode="replicate")[:, 0]
    gy = (h[:, 2:, 1:-1] - h[:, :-2, 1:-1]) / 2
    gx = (h[:, 1:-1, 2:] - h[:, 1:-1, :-2]) / 2
    return torch.sqrt(gy**2 + gx**2)


REFERENCES = {
    "random-map": random_map,
    "abs-height": height_magnitude,
    "height-edges": height_edges,
}
