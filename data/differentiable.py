"""The reduced-order target as a differentiable torch function of the heights.

:class:`PhysicsTarget` computes ``max_vorticity = ω_s tanh(|w(p*)| / ω_s)`` with
``w = K_h * h`` (the same zero-padded linear convolution as :mod:`data.simulator`, in torch and
float64) and ``p* = argmax |w|`` over the wake. It is an ``nn.Module`` mapping roughness
``(batch, 1, N, N)`` in delta to ``(batch,)`` in U_e/delta, so any attribution method can be
run on the physics itself: its zero-baseline integrated gradient is the campaign's exact
``contribution`` (``docs/physics.md``), which checks attribution and metric code end to end,
and its input gradient is the true sensitivity a surrogate's gradient can be compared with.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from data.physics import PhysicsParams
from data.simulator import VorticityModel


class PhysicsTarget(nn.Module):
    """``h -> max_vorticity`` of the reduced-order model, differentiable in ``h``.

    Args:
        params: Model parameters (default: the specification's at ``size``).
        size: Patch size ``N`` when ``params`` is not given.

    The peak ``p*`` is chosen per design by ``argmax``; the output is differentiable wherever
    the peak does not jump (everywhere along the path ``t h``, ``t > 0``).
    """

    def __init__(self, params: PhysicsParams | None = None, size: int = 64) -> None:
        super().__init__()
        self.params = params or PhysicsParams.for_size(size)
        model = VorticityModel(self.params)
        self.fft_shape = model.fft_shape
        self.register_buffer(
            "kernel_hat", torch.from_numpy(np.ascontiguousarray(model.kernel_spectrum))
        )

    def field(self, roughness: torch.Tensor) -> torch.Tensor:
        """Vorticity ``w`` ``(batch, N, LX)`` in U_e/delta for heights ``(batch, 1, N, N)``."""
        n, lx = self.params.size, self.params.length_x
        h = roughness[:, 0].to(torch.float64)
        w = torch.fft.irfft2(
            torch.fft.rfft2(h, s=self.fft_shape) * self.kernel_hat, s=self.fft_shape
        )
        return w[:, :n, :lx]

    def forward(self, roughness: torch.Tensor) -> torch.Tensor:
        """``max_vorticity`` ``(batch,)`` in U_e/delta, float64."""
        n, omega_s = self.params.size, self.params.omega_s
        wake = self.field(roughness)[:, :, n:].flatten(1)
        peak = wake.abs().argmax(dim=1, keepdim=True)
        amplitude = wake.gather(1, peak)[:, 0].abs()
        return omega_s * torch.tanh(amplitude / omega_s)
