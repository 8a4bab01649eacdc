"""Batched evaluation of the reduced-order model: vorticity field, target and exact truth.

``w = K_h * h`` is a linear, zero-padded (non-periodic) convolution done with real FFTs in
float64. The target is the saturated maximum of ``|w|`` over the wake, and the ground truth
is the exact zero-baseline integrated gradient of that target (see ``docs/physics.md``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft

from data.physics import PhysicsParams, roughness_kernel
from data.roughness import roughness_fields

MARGIN_EXCLUSION = 4  # rival peaks must lie more than this many cells away spanwise


@dataclass
class SimulationChunk:
    """Arrays for a block of samples; heights in delta, vorticity in U_e/delta."""

    roughness: np.ndarray  # (batch, N, N)
    max_vorticity: np.ndarray  # (batch,)
    contribution: np.ndarray  # (batch, N, N), sums to max_vorticity
    peak_y: np.ndarray  # (batch,) cell index
    peak_x: np.ndarray  # (batch,) cell index, >= N (in the wake)
    peak_sign: np.ndarray  # (batch,) +1 or -1
    peak_margin: np.ndarray  # (batch,) relative gap to the best rival peak


class VorticityModel:
    """The linear height -> vorticity map and its saturated maximum, for one parameter set."""

    def __init__(self, params: PhysicsParams, workers: int | None = None) -> None:
        self.params = params
        self.workers = workers
        n, lx = params.size, params.length_x
        self.kernel = roughness_kernel(params)  # rows eta + N - 1, cols xi + 1
        self.fft_shape = (
            sfft.next_fast_len(2 * n - 1, real=True),
            sfft.next_fast_len(n + lx - 1, real=True),
        )
        wrapped = np.zeros(self.fft_shape)
        eta = np.arange(-(n - 1), n) % self.fft_shape[0]
        xi = np.arange(-1, lx) % self.fft_shape[1]
        wrapped[np.ix_(eta, xi)] = self.kernel
        # the kernel's real 2-D spectrum on the padded grid (data.differentiable reuses it)
        self.kernel_spectrum = sfft.rfft2(wrapped, workers=workers)

    def field(self, h: np.ndarray) -> np.ndarray:
        """Vorticity ``w`` on spanwise ``0..N-1`` and streamwise ``0..LX-1``.

        Args:
            h: Heights in delta, shape ``(batch, N, N)``.

        Returns:
            float64 array ``(batch, N, LX)`` in U_e/delta (before saturation).
        """
        n, lx = self.params.size, self.params.length_x
        h_hat = sfft.rfft2(np.asarray(h, dtype=np.float64), s=self.fft_shape, workers=self.workers)
        w = sfft.irfft2(h_hat * self.kernel_spectrum, s=self.fft_shape, workers=self.workers)
        return w[:, :n, :lx]

    def contribution_of(self, h: np.ndarray, peak_y: np.ndarray, peak_x: np.ndarray) -> np.ndarray:
        """Exact contributions ``C(q) = K_h(p - q) h(q)`` to ``w(p)``, ``(batch, N, N)``."""
        n = self.params.size
        q = np.arange(n)
        rows = peak_y[:, None] - q[None, :] + (n - 1)  # eta + N - 1
        cols = peak_x[:, None] - q[None, :] + 1  # xi + 1
        valid = (cols >= 0)[:, None, :]  # xi < -1: downstream roughness, no influence
        gathered = self.kernel[rows[:, :, None], np.clip(cols, 0, None)[:, None, :]]
        return np.where(valid, gathered, 0.0) * h

    def evaluate(self, h: np.ndarray) -> SimulationChunk:
        """Target, peak location and ground truth for a batch of heights ``(batch, N, N)``."""
        n, omega_s = self.params.size, self.params.omega_s
        wake = self.field(h)[:, :, n:]
        flat = np.abs(wake).reshape(len(h), -1)
        idx = flat.argmax(axis=1)
        peak_y, peak_x_wake = np.unravel_index(idx, wake.shape[1:])
        peak_x = peak_x_wake + n
        w_peak = wake[np.arange(len(h)), peak_y, peak_x_wake]
        amplitude = np.abs(w_peak)
        sign = np.where(w_peak >= 0, 1.0, -1.0)
        target = omega_s * np.tanh(amplitude / omega_s)

        far = np.abs(np.arange(n)[None, :] - peak_y[:, None]) > MARGIN_EXCLUSION
        rival = np.where(far, np.abs(wake).max(axis=2), 0.0).max(axis=1)
        safe = np.where(amplitude > 0, amplitude, 1.0)
        margin = (amplitude - rival) / safe

        contrib = self.contribution_of(h, peak_y, peak_x)
        scale = np.where(amplitude > 0, sign * target / safe, 0.0)
        return SimulationChunk(
            roughness=h,
            max_vorticity=target,
            contribution=contrib * scale[:, None, None],
            peak_y=peak_y,
            peak_x=peak_x,
            peak_sign=sign,
            peak_margin=margin,
        )


def saturation_ratio(max_vorticity: np.ndarray, omega_s: float) -> np.ndarray:
    """``|w(p*)| / omega_s``, the peak before saturation, from ``omega_s tanh(|w(p*)| / omega_s)``.

    Args:
        max_vorticity: The saturated target ``(sample,)`` in U_e/delta.
        omega_s: The saturation level in U_e/delta (campaign attribute ``model_omega_s``).

    Returns:
        ``(sample,)`` float64, unitless: ``artanh(max_vorticity / omega_s)``, the ratio clipped
        to ``[0, 1)`` first, so a target stored as ``omega_s`` itself (float32 rounding of
        ``tanh`` near 1) gives a large finite value.
    """
    if not omega_s > 0:
        raise ValueError(f"omega_s must be positive, got {omega_s}")
    ratio = np.abs(np.asarray(max_vorticity, dtype=np.float64)) / omega_s
    return np.arctanh(np.clip(ratio, 0.0, np.nextafter(1.0, 0.0)))


def simulate_chunks(
    params: PhysicsParams,
    samples: int,
    seed: int,
    chunk_size: int = 500,
    workers: int | None = None,
) -> Iterator[tuple[int, SimulationChunk]]:
    """Yield ``(start, chunk)`` blocks covering ``samples`` samples; memory stays per-chunk."""
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    model = VorticityModel(params, workers=workers)
    for start in range(0, samples, chunk_size):
        count = min(chunk_size, samples - start)
        yield start, model.evaluate(roughness_fields(params, seed, start, count))
