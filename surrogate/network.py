"""The CNN regressor: roughness field -> maximum vorticity (in standardised units).

A plain ``nn.Module`` so the explanation code can hook it without Lightning. With the
default ``gap`` head (global average pool + linear) the map ``sum_k w_k A_k`` of the last
block is an exact class-activation map: its mean plus the bias is the output.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

Head = Literal["gap", "max"]


class CoordChannels(nn.Module):
    """Append normalised ``y`` and ``x`` coordinate channels in ``[-1, 1]`` (CoordConv)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype).view(1, 1, h, 1)
        xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype).view(1, 1, 1, w)
        return torch.cat([x, ys.expand(b, 1, h, w), xs.expand(b, 1, h, w)], dim=1)


def conv_block(
    c_in: int,
    c_out: int,
    kernel: tuple[int, int],
    convs: int,
    downsample: bool,
    stride: int = 1,
) -> nn.Sequential:
    """``convs`` x (conv, BatchNorm, ReLU), optionally preceded by a 2x2 max pool.

    ``stride`` applies to the first convolution (a learned downsampling stem).
    """
    layers: list[nn.Module] = [nn.MaxPool2d(2)] if downsample else []
    padding = (kernel[0] // 2, kernel[1] // 2)
    for i in range(convs):
        layers += [
            nn.Conv2d(
                c_in if i == 0 else c_out,
                c_out,
                kernel,
                padding=padding,
                bias=False,
                stride=stride if i == 0 else 1,
            ),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=False),
        ]
    return nn.Sequential(*layers)


class RoughnessCNN(nn.Module):
    """Stages of conv blocks, halving resolution between stages, then a pooled linear head.

    Args:
        widths: Channels per stage, e.g. ``(32, 64, 128, 256)``; one 2x downsampling
            between consecutive stages, so a 64x64 input gives an 8x8 last feature map.
        convs_per_stage: Convolutions in each stage.
        kernel_size: ``(ky, kx)``; a longer ``kx`` stretches the receptive field along the
            flow, where the transport kernel is long.
        head: ``"gap"`` (global average pool, CAM-compatible) or ``"max"`` (global max pool).
        coord_channels: Append y/x coordinate channels to the input.
        dropout: Dropout probability before the linear head.
        stem_stride: Stride of the very first convolution. 2 halves the resolution at
            once: the transport filters out spanwise wavelengths below ~9 cells, so little
            of the physics lives at the finest scale, and every later layer is 4x cheaper.

    Shapes: input ``(batch, 1, y, x)``; output ``(batch,)``.
    """

    def __init__(
        self,
        widths: Sequence[int] = (32, 64, 128, 256),
        convs_per_stage: int = 2,
        kernel_size: tuple[int, int] = (3, 3),
        head: Head = "gap",
        coord_channels: bool = False,
        dropout: float = 0.0,
        stem_stride: int = 1,
    ) -> None:
        super().__init__()
        if head not in ("gap", "max"):
            raise ValueError(f"head must be 'gap' or 'max', got {head!r}")
        if not widths or any(w < 1 for w in widths):
            raise ValueError(f"widths must be positive channel counts, got {list(widths)}")
        widths, kernel_size = tuple(widths), tuple(kernel_size)  # YAML and checkpoints: lists
        self.head_type = head
        self.coords = CoordChannels() if coord_channels else nn.Identity()
        c_in = 1 + (2 if coord_channels else 0)
        stages: OrderedDict[str, nn.Module] = OrderedDict()
        for i, width in enumerate(widths):
            stages[f"stage{i + 1}"] = conv_block(
                c_in,
                width,
                kernel_size,
                convs_per_stage,
                downsample=i > 0,
                stride=stem_stride if i == 0 else 1,
            )
            c_in = width
        self.features = nn.Sequential(stages)
        self.pool = nn.AdaptiveAvgPool2d(1) if head == "gap" else nn.AdaptiveMaxPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(c_in, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised prediction ``(batch,)`` for a standardised field ``(batch, C, y, x)``."""
        z = self.features(self.coords(x))
        z = self.pool(z).flatten(1)
        return self.fc(self.dropout(z)).squeeze(1)
