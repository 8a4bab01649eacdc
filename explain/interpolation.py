"""Bringing layer-resolution maps to the input grid, with a stated alignment rule.

Alignment: cell centres, ``align_corners=False``. Layer cell ``(i, j)`` of an ``h x w`` map
covers input cells ``[i*Y/h, (i+1)*Y/h) x [j*X/w, (j+1)*X/w)`` and its value sits at that
block's centre. ``none`` keeps each layer cell as the block of input cells it covers (the
"CAMs without interpolation" view), which is what ``nearest`` gives for integer factors;
``bilinear`` and ``bicubic`` interpolate between block centres and hold the edge values
beyond the outermost centres.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from data.errors import InputError

MODES = ("none", "nearest", "bilinear", "bicubic")


def upsample(maps: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Maps ``(batch, h, w)`` -> ``(batch, Y, X)`` by ``mode`` (see the module docstring)."""
    if mode not in MODES:
        raise InputError(f"unknown interpolation {mode!r}; choose from {list(MODES)}")
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    if mode == "none":
        h, w = maps.shape[-2:]
        if size[0] % h or size[1] % w:
            raise InputError(
                f"interpolation 'none' needs the input grid {tuple(size)} to be a whole multiple "
                f"of the layer grid {(h, w)}; use 'nearest' or 'bilinear'"
            )
        return maps.repeat_interleave(size[0] // h, dim=-2).repeat_interleave(size[1] // w, dim=-1)
    align = None if mode == "nearest" else False
    return F.interpolate(maps[:, None], size=size, mode=mode, align_corners=align)[:, 0]
