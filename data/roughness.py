"""Random roughness patches: Gaussian random field, bumps and ridges, tapered at the edges.

Every sample draws from its own generator seeded by ``(seed, sample index)``, so a
campaign is identical whatever chunk size produced it, and sample ``i`` of a 1,000-sample
campaign equals sample ``i`` of a 10,000-sample one with the same seed.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft as sfft

from data.physics import PhysicsParams

# per sample: grf rms, grf correlation length, then 3 bump slots x (present, y, x, radius,
# height), then 3 ridge slots x (present, y, x, length, width, angle, height)
_BUMP_FIELDS = 5
_RIDGE_FIELDS = 7


def _draw(params: PhysicsParams, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """White noise and the shape parameters of one sample."""
    n = params.size
    noise = rng.standard_normal((n, n))
    u = rng.uniform
    row = [u(*params.grf_rms), u(*params.grf_corr)]
    for _ in range(params.bump_slots):
        row += [rng.random() < params.slot_probability, u(0, n), u(0, n)]
        row += [u(*params.bump_radius), u(*params.bump_height)]
    for _ in range(params.ridge_slots):
        row += [rng.random() < params.slot_probability, u(0, n), u(0, n)]
        row += [u(*params.ridge_length), u(*params.ridge_width), u(0, math.pi)]
        row += [(1.0 if rng.random() < 0.5 else -1.0) * u(*params.ridge_height)]
    return noise, np.asarray(row, dtype=np.float64)


def _gaussian_field(noise: np.ndarray, rms: np.ndarray, corr: np.ndarray) -> np.ndarray:
    """Filter white noise with ``exp(-|k|^2 l^2 / 4)`` and scale each field to ``rms``."""
    n = noise.shape[-1]
    ky = 2 * math.pi * sfft.fftfreq(n)[:, None]
    kx = 2 * math.pi * sfft.rfftfreq(n)[None, :]
    k2 = ky**2 + kx**2
    spectrum = sfft.rfft2(noise) * np.exp(-k2[None] * corr[:, None, None] ** 2 / 4)
    field = sfft.irfft2(spectrum, s=(n, n))
    field -= field.mean(axis=(1, 2), keepdims=True)
    scale = rms / np.sqrt((field**2).mean(axis=(1, 2)))
    return field * scale[:, None, None]


def _bumps(shape: np.ndarray, n: int, slots: int) -> np.ndarray:
    """Round Gaussian bumps ``H exp(-d^2 / (2 r^2))``; ``shape`` is ``(batch, slots, 5)``."""
    yy, xx = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    out = np.zeros((shape.shape[0], n, n))
    for j in range(slots):
        present, cy, cx, radius, height = (shape[:, j, i][:, None, None] for i in range(5))
        d2 = (yy - cy) ** 2 + (xx - cx) ** 2
        out += present * height * np.exp(-d2 / (2 * radius**2))
    return out


def _ridges(shape: np.ndarray, n: int, slots: int) -> np.ndarray:
    """Elongated Gaussians: std ``length/4`` along the axis, ``width/2`` across."""
    yy, xx = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    out = np.zeros((shape.shape[0], n, n))
    for j in range(slots):
        present, cy, cx, length, width, angle, height = (
            shape[:, j, i][:, None, None] for i in range(7)
        )
        along = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
        across = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
        arg = (along / (length / 4)) ** 2 + (across / (width / 2)) ** 2
        out += present * height * np.exp(-0.5 * arg)
    return out


def edge_taper(n: int, width: float) -> np.ndarray:
    """Separable ``sin^2`` ramp over the outer ``width`` cells, 1 inside. Shape ``(n, n)``."""
    i = np.arange(n, dtype=np.float64)
    dist = np.minimum(i, n - 1 - i) + 0.5  # distance of the cell centre from the edge
    ramp = np.where(dist < width, np.sin(0.5 * math.pi * np.clip(dist / width, 0, 1)) ** 2, 1.0)
    return ramp[:, None] * ramp[None, :]


def roughness_fields(params: PhysicsParams, seed: int, start: int, count: int) -> np.ndarray:
    """Samples ``start .. start + count - 1`` of the campaign with ``seed``.

    Returns:
        Heights in delta, float64, shape ``(count, N, N)`` as ``(sample, y, x)``.
    """
    n = params.size
    draws = [_draw(params, np.random.default_rng([seed, i])) for i in range(start, start + count)]
    noise = np.stack([d[0] for d in draws])
    rows = np.stack([d[1] for d in draws])
    h = _gaussian_field(noise, rows[:, 0], rows[:, 1])
    nb = params.bump_slots * _BUMP_FIELDS
    bumps = rows[:, 2 : 2 + nb].reshape(count, params.bump_slots, _BUMP_FIELDS)
    ridges = rows[:, 2 + nb :].reshape(count, params.ridge_slots, _RIDGE_FIELDS)
    h += _bumps(bumps, n, params.bump_slots) + _ridges(ridges, n, params.ridge_slots)
    return h * edge_taper(n, params.taper)[None]


def ridge_field(
    params: PhysicsParams,
    angle_deg: float,
    height: float = 0.1,
    length: float | None = None,
    width: float | None = None,
) -> np.ndarray:
    """One centred ridge at ``angle_deg`` to the flow (x) direction, no taper; for probes.

    Args:
        params: Model parameters; only ``size`` and ``ridge_width`` are used.
        angle_deg: Angle of the ridge axis from +x towards +y, in degrees.
        height: Crest height in delta.
        length: Ridge length in cells (std ``length / 4`` along the axis); default
            ``0.75 N``, the orientation probe of ``docs/physics.md``.
        width: Ridge width in cells (std ``width / 2`` across); default the middle of
            the generator's width range.

    Returns:
        Heights in delta, shape ``(N, N)`` as ``(y, x)``.
    """
    n = params.size
    length = 0.75 * n if length is None else length
    width = float(np.mean(params.ridge_width)) if width is None else width
    centre = n / 2 - 0.5  # midway between the two central cell centres
    row = np.array([[[1.0, centre, centre, length, width, math.radians(angle_deg), height]]])
    return _ridges(row, n, 1)[0]
