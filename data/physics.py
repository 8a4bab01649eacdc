"""Reduced-order roughness -> vorticity model: parameters and the transport kernel.

This is a model of the mechanism (roughness tilts near-wall vortex lines, a parabolic
spanwise-band-limited transport carries the vorticity downstream), not a DNS. The full
specification lives in ``docs/physics.md``. Lengths inside the model are in cells; the
stored coordinates are in units of the boundary-layer thickness delta.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft

REFERENCE_SIZE = 64


@dataclass(frozen=True)
class PhysicsParams:
    """Parameters of the reduced-order model, in cells (lengths) and cells^-1 (rates).

    The defaults are those of the specification at ``size = 64``; use
    :meth:`for_size` to obtain the rescaled set for another patch size.
    """

    size: int = 64
    wake: int = 16
    phi_deg: float = 30.0
    beta_deg: float = 2.0
    lambda_cf: float = 16.0
    nu: float = 0.5
    mu: float = 0.05
    sigma0: float = 0.12
    s_k: float = 0.15
    velocity: float = 1.0
    amplitude: float = 1.0
    omega_s: float = 0.25
    cell_size: float = 0.25
    # roughness-field generator (lengths in cells, heights in delta)
    grf_rms: tuple[float, float] = (0.005, 0.03)
    grf_corr: tuple[float, float] = (1.5, 5.0)
    bump_slots: int = 3
    bump_radius: tuple[float, float] = (1.5, 4.0)
    bump_height: tuple[float, float] = (0.03, 0.15)
    ridge_slots: int = 3
    ridge_length: tuple[float, float] = (6.0, 20.0)
    ridge_width: tuple[float, float] = (0.7, 1.5)
    ridge_height: tuple[float, float] = (0.03, 0.15)
    slot_probability: float = 0.5
    taper: float = 4.0

    @classmethod
    def for_size(cls, size: int, **overrides: float) -> PhysicsParams:
        """Defaults rescaled to keep the physical patch at ``size`` cells a side.

        Lengths and ``nu`` scale with ``size / 64``; ``mu``, ``sigma0`` and ``s_k`` scale
        inversely; the cell size shrinks so that the patch stays 16 delta wide.
        """
        if size < 8:
            raise ValueError(f"size must be at least 8 cells, got {size}")
        r = size / REFERENCE_SIZE
        base = cls()

        def scaled(pair: tuple[float, float]) -> tuple[float, float]:
            return (pair[0] * r, pair[1] * r)

        params = cls(
            size=size,
            wake=max(1, round(base.wake * r)),
            lambda_cf=base.lambda_cf * r,
            nu=base.nu * r,
            mu=base.mu / r,
            sigma0=base.sigma0 / r,
            s_k=base.s_k / r,
            cell_size=base.cell_size / r,
            grf_corr=scaled(base.grf_corr),
            bump_radius=scaled(base.bump_radius),
            ridge_length=scaled(base.ridge_length),
            ridge_width=scaled(base.ridge_width),
            taper=base.taper * r,
        )
        return dataclasses.replace(params, **overrides) if overrides else params

    @property
    def length_x(self) -> int:
        """Streamwise extent of the evaluated field: the patch plus the wake, in cells."""
        return self.size + self.wake

    def as_attrs(self) -> dict[str, float | int | str]:
        """Flat dictionary for netCDF global attributes (tuples as ``lo,hi`` strings)."""
        out: dict[str, float | int | str] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, tuple):
                value = ",".join(repr(float(v)) for v in value)
            out[f"model_{field.name}"] = value
        return out

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, object]) -> PhysicsParams | None:
        """The parameters :meth:`as_attrs` wrote, or None if any ``model_*`` attribute is absent.

        Campaigns converted from other simulations carry none, so callers fall back to what the
        file itself holds.
        """
        values: dict[str, object] = {}
        for field in dataclasses.fields(cls):
            key = f"model_{field.name}"
            if key not in attrs:
                return None
            value, default = attrs[key], field.default
            if isinstance(default, tuple):
                values[field.name] = tuple(float(v) for v in str(value).split(","))
            else:
                values[field.name] = type(default)(value)
        return cls(**values)


def spanwise_growth(params: PhysicsParams, k_y: np.ndarray) -> np.ndarray:
    """Complex spanwise transfer rate ``G(k_y)`` per cell of downstream march."""
    k_cf = 2.0 * math.pi / params.lambda_cf
    sigma = params.sigma0 * np.exp(-((np.abs(k_y) - k_cf) ** 2) / (2.0 * params.s_k**2))
    real = (sigma - params.nu * k_y**2 - params.mu) / params.velocity
    return real - 1j * k_y * math.tan(math.radians(params.beta_deg))


def transport_kernel(params: PhysicsParams) -> np.ndarray:
    """Causal transport kernel ``K0[eta, xi]`` for ``|eta| <= N`` and ``xi = 0 .. LX``.

    Built on a fine spanwise grid (8N points) so the spanwise inverse FFT does not alias,
    then cropped. Row ``eta + N`` holds spanwise offset ``eta``. Shape ``(2N + 1, LX + 1)``.
    """
    n = params.size
    fine = 8 * n
    k_y = 2.0 * math.pi * sfft.fftfreq(fine)
    xi = np.arange(params.length_x + 1, dtype=np.float64)
    spectrum = np.exp(spanwise_growth(params, k_y)[:, None] * (xi[None, :] + 0.5))
    kernel = sfft.ifft(spectrum, axis=0).real / params.velocity
    rows = np.arange(-n, n + 1) % fine
    return kernel[rows]


def roughness_kernel(params: PhysicsParams) -> np.ndarray:
    """Kernel ``K_h`` mapping height to vorticity: ``K0`` folded with ``A d/dn``.

    ``w = K_h * h`` (linear convolution). Row ``eta + N - 1`` holds spanwise offset
    ``eta`` in ``[-(N-1), N-1]``; column ``xi + 1`` holds streamwise offset ``xi`` in
    ``[-1, LX - 1]`` (the streamwise difference stencil reaches one cell downstream).
    Shape ``(2N - 1, LX + 1)``.
    """
    n, lx = params.size, params.length_x
    k0 = np.zeros((2 * n + 1, lx + 2))
    k0[:, 1:] = transport_kernel(params)  # column c holds xi = c - 1; xi = -1 is zero
    phi = math.radians(params.phi_deg)
    centre = slice(1, 2 * n)  # eta in [-(N-1), N-1]
    # D-folding: dh/dn = cos(phi) dh/dy - sin(phi) dh/dx with central differences, so
    # K_h(xi, eta) = cos(phi)/2 [K0(xi, eta+1) - K0(xi, eta-1)]
    #              - sin(phi)/2 [K0(xi+1, eta) - K0(xi-1, eta)].
    d_eta = k0[2 : 2 * n + 1, :] - k0[0 : 2 * n - 1, :]
    k_h = np.zeros((2 * n - 1, lx + 1))
    # output column c <-> xi = c - 1, i.e. k0 column c
    k_h += 0.5 * math.cos(phi) * d_eta[:, 0 : lx + 1]
    plus = k0[centre, 1 : lx + 2]  # K0(xi + 1)
    minus = np.zeros_like(plus)
    minus[:, 1:] = k0[centre, 0:lx]  # K0(xi - 1); zero for xi <= 0
    k_h -= 0.5 * math.sin(phi) * (plus - minus)
    return params.amplitude * k_h
