"""Saving matplotlib figures as PNG and PDF, atomically (training and explanation plots)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from data.atomic import atomic_path

UNITS = r"$U_e/\delta$"


def save_figure(fig: plt.Figure, stem: Path) -> list[Path]:
    """Save ``fig`` as ``stem.png`` and ``stem.pdf`` atomically and close it."""
    written = []
    for ext in ("png", "pdf"):
        target = stem.with_name(f"{stem.name}.{ext}")
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight")
        written.append(target)
    plt.close(fig)
    return written
