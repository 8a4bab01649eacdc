"""Integrated gradients: a map that sums to ``f(x) - f(b)``, at input resolution.

``IG_i = (x_i - b_i) ∫_0^1 ∂f/∂x_i (b + α (x - b)) dα`` (Sundararajan et al. 2017), with the
reference field ``b`` a smooth wall or the blurred design (:mod:`explain.baselines`). The
integral is Gauss–Legendre quadrature with ``steps`` nodes on ``[0, 1]`` (captum's default
rule; exact for polynomials of degree ``2 steps - 1``). Completeness, ``Σ_i IG_i = f(x) - f(b)``,
then holds up to the quadrature error, which :func:`integrated_gradients` returns per design.

For a function that is linear in the heights along the path, as the reduced-order physics
is up to its saturation, the zero-baseline integrated gradient is the exact per-cell
contribution (``docs/physics.md``): the campaign's ``contribution`` field.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from explain.baselines import baseline_field
from explain.batching import one_per_input
from explain.hooks import eval_mode
from explain.inputs import positive_int, roughness_batch


def gauss_legendre(steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes ``α`` in ``(0, 1)`` and weights (summing to 1) of ``steps``-point Gauss–Legendre."""
    nodes, weights = np.polynomial.legendre.leggauss(positive_int("steps", steps))
    return torch.from_numpy(0.5 * (nodes + 1)), torch.from_numpy(0.5 * weights)


def integrated_gradients(
    model: nn.Module,
    roughness: torch.Tensor,
    baseline: torch.Tensor | float | None = None,
    *,
    steps: int = 32,
    chunk: int = 256,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integrated gradients of ``model`` for each design, all path points batched.

    Args:
        model: Any module mapping ``(batch, 1, y, x)`` to ``(batch,)``.
        roughness: Heights ``(batch, 1, y, x)`` in delta.
        baseline: A name of :data:`explain.baselines.BASELINES` or a field broadcasting to
            ``roughness``; default the smooth wall (0).
        steps: Quadrature nodes along the straight path from ``b`` to ``x``.
        chunk: Largest number of path points per forward/backward pass.

    Returns:
        ``(f(x) (batch,), map (batch, y, x), f(b) (batch,))``: the map is signed, in the
        output's units per cell (``U_e/delta``), and sums to ``f(x) - f(b)`` up to the
        quadrature error.
    """
    x = roughness_batch(roughness).detach()
    b = baseline_field(baseline, x)
    positive_int("chunk", chunk)
    alphas, weights = (t.to(x.device, x.dtype) for t in gauss_legendre(steps))
    batch = x.shape[0]
    sample = torch.arange(batch, device=x.device).repeat_interleave(steps)
    node = torch.arange(steps, device=x.device).repeat(batch)
    total = torch.zeros_like(x)
    with eval_mode(model):
        with torch.no_grad():
            ends = one_per_input(model(torch.cat([x, b])), 2 * batch)
        for start in range(0, batch * steps, chunk):
            i, k = sample[start : start + chunk], node[start : start + chunk]
            point = b[i] + alphas[k, None, None, None] * (x[i] - b[i])
            point.requires_grad_(True)
            with torch.enable_grad():
                y = one_per_input(model(point), point.shape[0])
                (grad,) = torch.autograd.grad(y.sum(), point)
            total.index_add_(0, i, weights[k, None, None, None] * grad)
    return ends[:batch], ((x - b) * total)[:, 0], ends[batch:]
