"""Per-sample similarity between maps: rank correlation and SSIM (ground truth, sanity checks).

SSIM follows Wang et al. (2004): Gaussian window with ``sigma = 1.5`` truncated at 3.5 sigma
(an 11 x 11 window), constants ``C1 = (0.01 R)^2`` and ``C2 = (0.03 R)^2`` for data range
``R``, population (not sample) covariances. Local statistics are filtered with ``reflect``
padding (``scipy.ndimage``'s half-sample symmetric mode, as scikit-image does), so every cell
has an SSIM value; the score is the mean over the whole map by default, because layer-resolution
maps (8 x 8, say) are smaller than the window. ``crop=True`` instead averages only cells at
least the window radius from the edge, which is scikit-image's ``structural_similarity``.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.stats import rankdata

SSIM_K1 = 0.01
SSIM_K2 = 0.03
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's rho between ``a[i]`` and ``b[i]`` for each sample ``i``.

    Args:
        a, b: Arrays ``(sample, ...)`` of equal shape; trailing axes are flattened.

    Returns:
        ``(sample,)`` float64; ties get average ranks; NaN where either map is constant
        (a correlation is undefined there).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"spearman: shapes differ, {a.shape} vs {b.shape}")
    cells = int(np.prod(a.shape[1:]))
    ra = rankdata(a.reshape(len(a), cells), axis=1)
    rb = rankdata(b.reshape(len(b), cells), axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    denom = np.sqrt((ra**2).sum(axis=1) * (rb**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (ra * rb).sum(axis=1) / denom, np.nan)


def scale01(maps: np.ndarray) -> np.ndarray:
    """Per-sample min-max scaling of ``maps (sample, ...)`` to ``[0, 1]``, as float64.

    A constant map becomes all zeros (there is no structure to scale).
    """
    maps = np.asarray(maps, dtype=np.float64)
    flat = maps.reshape(len(maps), -1)
    lo = flat.min(axis=1, keepdims=True)
    span = flat.max(axis=1, keepdims=True) - lo
    scaled = np.where(span > 0, (flat - lo) / np.where(span > 0, span, 1.0), 0.0)
    return scaled.reshape(maps.shape)


def ssim_map(
    a: np.ndarray, b: np.ndarray, *, sigma: float = SSIM_SIGMA, data_range: float = 1.0
) -> np.ndarray:
    """Local SSIM between ``a[i]`` and ``b[i]`` at every cell (see the module docstring).

    Args:
        a, b: Maps ``(sample, y, x)`` of equal shape, already on a common scale (e.g.
            :func:`scale01`).
        sigma: Standard deviation of the Gaussian window, in cells.
        data_range: ``R`` in the stabilising constants; 1 for maps in ``[0, 1]``.

    Returns:
        ``(sample, y, x)`` float64, at most 1.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"ssim: expected two (sample, y, x) arrays, got {a.shape} and {b.shape}")
    if not sigma > 0 or not data_range > 0:
        raise ValueError(f"ssim: sigma and data_range must be positive, got {sigma}, {data_range}")

    def local_mean(v: np.ndarray) -> np.ndarray:
        return gaussian_filter(v, sigma=(0, sigma, sigma), mode="reflect", truncate=SSIM_TRUNCATE)

    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    mu_a, mu_b = local_mean(a), local_mean(b)
    var_a = local_mean(a * a) - mu_a**2
    var_b = local_mean(b * b) - mu_b**2
    cov = local_mean(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return num / den


def ssim(
    a: np.ndarray,
    b: np.ndarray,
    *,
    sigma: float = SSIM_SIGMA,
    data_range: float = 1.0,
    crop: bool = False,
) -> np.ndarray:
    """Mean SSIM between ``a[i]`` and ``b[i]`` for each sample ``i``.

    Args:
        a, b: Maps ``(sample, y, x)`` of equal shape on a common scale; use
            ``ssim(scale01(a), scale01(b))`` for attribution maps of arbitrary units.
        sigma: Gaussian window standard deviation, in cells.
        data_range: ``R`` in the constants ``C1 = (0.01 R)^2``, ``C2 = (0.03 R)^2``.
        crop: Average only cells at least the window radius (``int(3.5 sigma + 0.5)``) from
            every edge, as scikit-image does; needs maps larger than the window.

    Returns:
        ``(sample,)`` float64 in ``[-1, 1]``; 1 for identical maps, symmetric in ``a, b``.
    """
    local = ssim_map(a, b, sigma=sigma, data_range=data_range)
    if crop:
        r = int(SSIM_TRUNCATE * sigma + 0.5)
        if min(local.shape[1:]) <= 2 * r:
            raise ValueError(f"ssim: crop needs maps larger than {2 * r + 1} cells a side")
        local = local[:, r:-r, r:-r]
    return local.reshape(len(local), -1).mean(axis=1)
