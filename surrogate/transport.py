"""A surrogate shaped like the physics: learned linear transport, pointwise response, wake maximum.

The reduced-order model is ``max_vorticity = ω_s tanh(max_wake |K_h * h| / ω_s)``: a linear,
causal convolution of the heights, then a saturated maximum over the wake. :class:`TransportNet`
has the same three parts, each learned:

1. ``channels`` linear transport kernels ``K_c`` spanning ``±span`` cells across the flow and
   ``-1 .. reach - 1`` cells downstream (nothing reaches upstream), applied by zero-padded FFT
   convolution over the patch plus the wake — a non-periodic, linear, causal map;
2. a per-location MLP of the ``channels`` transported fields (1x1 convolutions), which can
   form ``|w|`` and its saturation;
3. a smooth maximum (log-sum-exp with temperature ``tau``) of that response over the wake,
   ``wake`` cells downstream of the patch, then a small scalar head.

Because the only path from the heights to the output is the linear transport, the input
gradient is ``K^T`` applied to the pointwise sensitivities, and gradient x input or integrated
gradients read per-cell contributions the way the physics defines them.
"""

from __future__ import annotations

import math

import torch
from scipy.fft import next_fast_len
from torch import nn


class TransportNet(nn.Module):
    """Roughness ``(batch, 1, y, x)`` (standardised) -> standardised target ``(batch,)``.

    Args:
        channels: Number of learned transport kernels.
        span: Spanwise half-width of each kernel, in cells.
        reach: Streamwise reach of each kernel downstream, in cells (the patch plus the wake
            at the reference size: 64 + 16).
        wake: Cells downstream of the patch over which the maximum is taken.
        hidden: Width of the per-location MLP and of the head.
        tau: Temperature of the log-sum-exp maximum (standardised response units).
    """

    def __init__(
        self,
        channels: int = 2,
        span: int = 63,
        reach: int = 80,
        wake: int = 16,
        hidden: int = 16,
        tau: float = 0.1,
    ) -> None:
        super().__init__()
        if min(channels, span, reach, wake, hidden) < 1 or not tau > 0:
            raise ValueError(
                "channels, span, reach, wake and hidden must be >= 1 and tau > 0, got "
                f"{(channels, span, reach, wake, hidden, tau)}"
            )
        self.span, self.reach, self.wake, self.tau = span, reach, wake, tau
        # rows: spanwise offset -span..span; columns: streamwise offset -1..reach-1
        fan_in = (2 * span + 1) * (reach + 1)
        self.kernel = nn.Parameter(torch.randn(channels, 2 * span + 1, reach + 1) / fan_in)
        self.response = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.SiLU(), nn.Conv2d(hidden, 1, 1)
        )
        self.head = nn.Sequential(nn.Linear(1, hidden), nn.SiLU(), nn.Linear(hidden, 1))

    def transport(self, h: torch.Tensor) -> torch.Tensor:
        """Transported fields ``(batch, channels, y, x + wake)`` over the patch and the wake."""
        ny, nx = h.shape[-2:]
        lx = nx + self.wake
        fy = next_fast_len(ny + 2 * self.span, real=True)
        fx = next_fast_len(nx + lx + 1, real=True)
        rows = torch.arange(-self.span, self.span + 1, device=h.device) % fy
        cols = torch.arange(-1, self.reach, device=h.device) % fx
        wrapped = self.kernel.new_zeros(self.kernel.shape[0], fy, fx)
        wrapped[:, rows[:, None], cols[None, :]] = self.kernel
        spectrum = torch.fft.rfft2(h, s=(fy, fx)) * torch.fft.rfft2(wrapped)
        return torch.fft.irfft2(spectrum, s=(fy, fx))[..., :ny, :lx]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised prediction ``(batch,)`` for a standardised field ``(batch, 1, y, x)``."""
        nx = x.shape[-1]
        response = self.response(self.transport(x)[..., nx:])  # the wake: (batch, 1, y, wake)
        flat = response.flatten(1) / self.tau
        peak = self.tau * (torch.logsumexp(flat, dim=1) - math.log(flat.shape[1]))
        return self.head(peak[:, None]).squeeze(1)
