"""Diagnostic plots of a trained surrogate, with units, as PNG and PDF."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from data.figures import UNITS, save_figure


def parity_plot(simulated: np.ndarray, predicted: np.ndarray, r2: float, stem: Path) -> list[Path]:
    """Predicted vs simulated maximum vorticity with the identity line."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    lo = float(min(simulated.min(), predicted.min()))
    hi = float(max(simulated.max(), predicted.max()))
    ax.plot([lo, hi], [lo, hi], color="0.4", lw=1, label="identity")
    ax.scatter(simulated, predicted, s=4, alpha=0.5, color="C0", label=f"test ($R^2$ = {r2:.3f})")
    ax.set_xlabel(f"simulated max vorticity [{UNITS}]")
    ax.set_ylabel(f"predicted max vorticity [{UNITS}]")
    ax.set_aspect("equal")
    ax.legend(loc="upper left")
    ax.set_title("Surrogate parity, held-out test split")
    return save_figure(fig, stem)


def residual_histogram(residual: np.ndarray, stem: Path) -> list[Path]:
    """Histogram of predicted minus simulated maximum vorticity."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.hist(residual, bins=50, color="C1")
    ax.axvline(0, color="0.3", lw=1)
    rmse = float(np.sqrt(np.mean(residual**2)))
    ax.set_xlabel(f"predicted - simulated [{UNITS}]")
    ax.set_ylabel("test samples")
    ax.set_title(f"Residuals (RMSE {rmse:.4f} {UNITS})")
    return save_figure(fig, stem)
