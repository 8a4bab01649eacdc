"""Non-deep reference: ridge regression on quadratic features of roughness summary statistics.

The same held-out split as the CNN (data.datamodule.split_indices with the config's seed).
The features are what an engineer would compute without a network: height moments, slope
statistics along the flow, across it and along the vortex-line normal n, and the energy in
the receptive cross-flow band.
"""

from __future__ import annotations

import math

import numpy as np

from data.physics import PhysicsParams


def summary_features(h: np.ndarray, params: PhysicsParams) -> np.ndarray:
    """Per-sample statistics of heights ``(batch, y, x)`` in delta -> ``(batch, 9)``."""
    dy = 0.5 * (np.roll(h, -1, 1) - np.roll(h, 1, 1))
    dx = 0.5 * (np.roll(h, -1, 2) - np.roll(h, 1, 2))
    phi = math.radians(params.phi_deg)
    dn = math.cos(phi) * dy - math.sin(phi) * dx
    n = h.shape[-1]
    k_y = 2 * math.pi * np.fft.fftfreq(n)
    band = np.abs(np.abs(k_y) - 2 * math.pi / params.lambda_cf) < params.s_k
    spectrum = np.abs(np.fft.fft(h, axis=1)) ** 2
    band_energy = spectrum[:, band, :].sum(axis=(1, 2)) / spectrum.sum(axis=(1, 2)).clip(1e-30)
    return np.stack(
        [
            h.std(axis=(1, 2)),
            h.max(axis=(1, 2)),
            -h.min(axis=(1, 2)),
            np.abs(dx).mean(axis=(1, 2)),
            np.abs(dy).mean(axis=(1, 2)),
            np.abs(dn).mean(axis=(1, 2)),
            np.abs(dn).max(axis=(1, 2)),
            (dn**2).mean(axis=(1, 2)) ** 0.5,
            band_energy,
        ],
        axis=1,
    )


def quadratic(features: np.ndarray) -> np.ndarray:
    """Constant, linear and all pairwise products of the (standardised) features."""
    i, j = np.triu_indices(features.shape[1])
    return np.concatenate(
        [np.ones((len(features), 1)), features, features[:, i] * features[:, j]], axis=1
    )


def fit_ridge(train_x: np.ndarray, train_y: np.ndarray, alpha: float = 1e-3):
    """Ridge on quadratic features; returns a predictor ``features -> y``."""
    mu, sd = train_x.mean(0), train_x.std(0) + 1e-12
    design = quadratic((train_x - mu) / sd)
    penalty = alpha * len(design) * np.eye(design.shape[1])
    penalty[0, 0] = 0.0
    coef = np.linalg.solve(design.T @ design + penalty, design.T @ train_y)
    return lambda x: quadratic((x - mu) / sd) @ coef


def r2_rmse(true: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """Coefficient of determination and root-mean-square error."""
    resid = pred - true
    r2 = 1.0 - float((resid**2).sum() / ((true - true.mean()) ** 2).sum())
    return r2, float(np.sqrt((resid**2).mean()))
