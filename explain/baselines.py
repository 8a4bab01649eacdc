"""Reference fields an attribution is measured against: the smooth wall and the blurred design.

A map that sums to ``f(x) - f(b)`` (integrated gradients) or a perturbation that blends
towards ``b`` (Score-CAM, Poly-CAM, deletion/insertion) needs a reference ``b``. Two are
physical here: the **smooth wall** ``h = 0`` (no roughness at all) and the design **blurred**
with a Gaussian of 4 cells (the fine roughness removed, the large-scale shape kept).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from data.errors import InputError
from explain.inputs import expand_baseline, roughness_batch


def smooth_wall(x: torch.Tensor) -> torch.Tensor:
    """The smooth-wall baseline ``h = 0``: zeros shaped like ``x`` ``(batch, 1, y, x)``."""
    return torch.zeros_like(x)


def _reflect_index(size: int, radius: int, device: torch.device) -> torch.Tensor:
    """Indices of ``[-radius, size + radius)`` mirrored about the cell edges (``dcba|abcd|dcba``).

    Periodic with period ``2 size``, so any radius works, also one larger than the grid.
    """
    idx = torch.arange(-radius, size + radius, device=device) % (2 * size)
    return torch.where(idx >= size, 2 * size - 1 - idx, idx)


def blurred(x: torch.Tensor, sigma_cells: float = 4.0) -> torch.Tensor:
    """Gaussian-blurred baseline ``(batch, 1, y, x)``, same units as ``x``.

    Separable Gaussian of standard deviation ``sigma_cells`` (in cells), truncated at
    ``radius = int(3 sigma + 0.5)`` cells and normalised to sum 1, with reflect padding about
    the cell edges (``d c b a | a b c d``); this equals
    ``scipy.ndimage.gaussian_filter(x, sigma, mode="reflect", truncate=3.0)`` per field.
    ``sigma_cells = 0`` returns a copy of ``x``.
    """
    x = roughness_batch(x, "x")
    if not sigma_cells >= 0:
        raise InputError(f"sigma_cells must be >= 0 cells, got {sigma_cells!r}")
    radius = int(3 * sigma_cells + 0.5)
    if radius == 0:
        return x.clone()
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma_cells) ** 2)
    kernel = (kernel / kernel.sum()).to(x.dtype)
    out = x[:, :, _reflect_index(x.shape[2], radius, x.device)]
    out = F.conv2d(out, kernel.view(1, 1, -1, 1))
    out = out[:, :, :, _reflect_index(x.shape[3], radius, x.device)]
    return F.conv2d(out, kernel.view(1, 1, 1, -1))


# Reference fields by name: what an attribution is measured against (``--baseline``) and what
# deletion/insertion blends towards (``surrogate evaluate``)
BASELINES = {"smooth-wall": smooth_wall, "blurred": blurred}


def baseline_field(baseline: str | torch.Tensor | float | None, x: torch.Tensor) -> torch.Tensor:
    """The reference field for designs ``x`` ``(batch, 1, y, x)``: a name of :data:`BASELINES`,
    a field that broadcasts to ``x``, or None for the smooth wall."""
    if baseline is None:
        return smooth_wall(x)
    if isinstance(baseline, str):
        if baseline not in BASELINES:
            raise InputError(f"unknown baseline {baseline!r}; choose from {list(BASELINES)}")
        return BASELINES[baseline](x)
    return expand_baseline(baseline, x)
