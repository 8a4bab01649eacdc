"""Perturbation-based CAMs for a scalar regression output: Score-CAM and Poly-CAM.

Channels of a hooked layer are weighted by how the model's raw output changes when the input
is masked with each channel's own activation pattern; no gradients are taken. This is the
regression form: the output ``f`` is used as it comes (maximum vorticity in ``U_e/delta``),
never through a softmax or sigmoid, so every weight is in the output's units.

Notation: ``x`` the roughness ``(batch, 1, y, x)`` in delta; ``b`` the baseline field (default
zeros, a smooth wall ``h = 0``); ``A_k`` channel ``k`` of a layer ``(batch, K, h, w)``;
``M_k = minmax(Up(A_k))`` its mask on the input grid: bilinear upsampling (cell centres,
``align_corners=False``), then scaled to ``[0, 1]`` per sample and channel. A channel that is
constant over the map carries no spatial information and gets ``M_k = 0`` (so its weight is 0).

Masking blends towards the baseline, ``x_M = b + M (x - b)``. For the default ``b = 0`` this is
the papers' ``x * M``; for any ``b`` an empty mask gives ``f(b)`` and a full mask ``f(x)``, so a
channel that selects nothing gets weight 0 instead of ``f(0) - f(b)``.

All masked inputs (every sample, channel, layer and sign) go through the model in batches of at
most ``chunk`` under ``torch.no_grad()``, in eval mode, with ``f(b)`` evaluated once.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from data.errors import InputError
from explain.baselines import baseline_field
from explain.batching import forward_rows, one_per_input
from explain.hooks import captured_layers, eval_mode
from explain.inputs import positive_int, roughness_batch
from explain.interpolation import upsample

POLY_VARIANTS = ("polycam+", "polycam-", "polycam+-")
# masked passes each variant needs: "+" keeps the mask (M), "-" removes it (1 - M)
_SIGNS = {"polycam+": "+", "polycam-": "-", "polycam+-": "+-"}


def _check_inputs(
    roughness: torch.Tensor, baseline: torch.Tensor | None, chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The detached input and the baseline expanded to its shape, on its device."""
    x = roughness_batch(roughness).detach()
    positive_int("chunk", chunk)
    return x, baseline_field(baseline, x)


def _unit_masks(act: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Masks ``(n, Y, X)`` in ``[0, 1]`` from activations ``(n, h, w)``; constant -> 0."""
    up = upsample(act, size, "bilinear")
    low = up.amin(dim=(1, 2), keepdim=True)
    span = up.amax(dim=(1, 2), keepdim=True) - low
    return torch.where(span > 0, (up - low) / torch.where(span > 0, span, 1), 0)


def _masked_inputs(
    x: torch.Tensor, b: torch.Tensor, act: torch.Tensor, complement: bool, chunk: int
) -> Iterator[torch.Tensor]:
    """``b + M (x - b)`` (or with ``1 - M``) for every (sample, channel), sample-major.

    Masks are made ``chunk`` at a time so that ``batch x K`` full-size inputs never coexist.
    """
    batch, channels = act.shape[:2]
    flat = act.flatten(0, 1)
    samples = torch.arange(batch, device=x.device).repeat_interleave(channels)
    for start in range(0, batch * channels, chunk):
        masks = _unit_masks(flat[start : start + chunk], tuple(x.shape[-2:]))
        if complement:
            masks = 1 - masks
        idx = samples[start : start + chunk]
        yield b[idx] + masks[:, None] * (x[idx] - b[idx])


def _perturbed_outputs(
    model: nn.Module,
    x: torch.Tensor,
    b: torch.Tensor,
    acts: Sequence[torch.Tensor],
    signs: Sequence[str],
    chunk: int,
) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """``f(b)`` ``(batch,)`` and, per layer and sign, ``f`` of the masked inputs ``(batch, K)``.

    Sign ``"+"`` keeps the masked region (``M``), ``"-"`` removes it (``1 - M``).
    """
    segments = [(i, sign) for i in range(len(acts)) for sign in signs]
    pieces = itertools.chain(
        [b], *(_masked_inputs(x, b, acts[i], sign == "-", chunk) for i, sign in segments)
    )
    flat = forward_rows(model, pieces, chunk)
    batch = x.shape[0]
    sizes = [acts[i].shape[0] * acts[i].shape[1] for i, _ in segments]
    per_layer: list[dict[str, torch.Tensor]] = [{} for _ in acts]
    for (i, sign), out in zip(segments, flat[batch:].split(sizes), strict=True):
        per_layer[i][sign] = out.view(batch, -1)
    return flat[:batch], per_layer


def _activations(
    model: nn.Module, x: torch.Tensor, layers: Sequence[str]
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Prediction ``(batch,)`` and each layer's activation from one hooked forward pass."""
    with captured_layers(model, layers) as store:
        y = one_per_input(model(x), x.shape[0])
    return y, [store[layer] for layer in layers]


def _channel_map(weights: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """``ReLU(sum_k w_k A_k)`` ``(batch, h, w)`` from weights ``(batch, K)``."""
    return torch.relu(torch.einsum("bk,bkhw->bhw", weights, act))


def score_cam(
    model: nn.Module,
    roughness: torch.Tensor,
    layer: str,
    *,
    baseline: torch.Tensor | None = None,
    chunk: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Score-CAM (Wang et al. 2020), regression form, at the layer's resolution.

    ``alpha_k = f(b + M_k (x - b)) - f(b)`` on the raw output (no softmax over channels:
    ``alpha`` stays in the output's units, ``U_e/delta``) and ``M = ReLU(sum_k alpha_k A_k)``.
    A channel constant over the map gets ``M_k = 0`` and so ``alpha_k = 0``.

    Args:
        model: Any module mapping ``(batch, 1, y, x)`` to ``(batch,)``.
        roughness: Heights ``(batch, 1, y, x)`` in delta.
        layer: Module name with a spatial output ``(batch, K, h, w)``.
        baseline: Reference field, default zeros (a smooth wall); any tensor that broadcasts
            to ``roughness``'s shape.
        chunk: Largest number of masked inputs per forward pass.

    Returns:
        ``(prediction (batch,), map (batch, h, w))``; the map is rectified, in ``U_e/delta``
        times the layer's activation units.
    """
    x, b = _check_inputs(roughness, baseline, chunk)
    with eval_mode(model), torch.no_grad():
        y, (act,) = _activations(model, x, [layer])
        f_b, (outs,) = _perturbed_outputs(model, x, b, [act], ["+"], chunk)
    return y, _channel_map(outs["+"] - f_b[:, None], act)


def _check_variants(variants: Sequence[str]) -> None:
    unknown = [v for v in variants if v not in POLY_VARIANTS]
    if unknown or not variants:
        raise InputError(f"unknown or no variant(s) {list(variants)}; choose from {POLY_VARIANTS}")


def _check_order(layers: Sequence[str], acts: Sequence[torch.Tensor]) -> None:
    sizes = [tuple(a.shape[-2:]) for a in acts]
    if any(d[0] > s[0] or d[1] > s[1] for s, d in itertools.pairwise(sizes)):
        found = ", ".join(f"{n} {s}" for n, s in zip(layers, sizes, strict=True))
        raise InputError(
            f"layers must be ordered shallow -> deep (non-increasing resolution); got {found}"
        )


def _poly_weights(
    outs: dict[str, torch.Tensor], f_x: torch.Tensor, f_b: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Per-channel weights ``(batch, K)`` of each variant, in the output's units."""
    weights: dict[str, torch.Tensor] = {}
    if "+" in outs:
        weights["polycam+"] = outs["+"] - f_b[:, None]
    if "-" in outs:
        weights["polycam-"] = f_x[:, None] - outs["-"]
    if len(outs) == 2:
        # Englebert et al. add the two scores (polycam/polycam.py, PCAMpm); here, with both
        # terms referred to their own reference, w+- = w+ + w- is 0 for an empty mask and
        # 2 (f(x) - f(b)) for a full one.
        weights["polycam+-"] = weights["polycam+"] + weights["polycam-"]
    return weights


def _local_norm(s: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``s`` ``(batch, h, w)`` divided by its mean over the block one cell of ``grid`` covers.

    The block means (adaptive average pooling to ``grid``) are brought back to ``(h, w)``
    bilinearly, as in the reference implementation, so the denominator has no block seams;
    where it is 0 (no positive relevance nearby) the result is 0.
    """
    mean = upsample(F.adaptive_avg_pool2d(s[:, None], grid)[:, 0], tuple(s.shape[-2:]), "bilinear")
    return torch.where(mean > 0, s / torch.where(mean > 0, mean, 1), 0)


def _fuse(maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """Fuse per-layer maps (shallow -> deep) from the deepest up, at the shallowest grid."""
    fused = maps[-1]
    for shallow in reversed(maps[:-1]):
        size = tuple(shallow.shape[-2:])
        fused = upsample(fused, size, "bilinear") * _local_norm(shallow, tuple(fused.shape[-2:]))
    return fused


def poly_cam(
    model: nn.Module,
    roughness: torch.Tensor,
    layers: Sequence[str],
    *,
    variants: Sequence[str] = POLY_VARIANTS,
    baseline: torch.Tensor | None = None,
    chunk: int = 256,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Poly-CAM (Englebert et al. 2022, arXiv 2204.13359), regression form.

    For each layer ``l`` and channel ``k``, with ``x_M = b + M (x - b)`` (see the module
    docstring), the weights are, on the raw output in ``U_e/delta``:

    - ``polycam+``: ``w+ = f(x_M) - f(b)``, the output gained by keeping only the mask;
    - ``polycam-``: ``w- = f(x) - f(x_(1-M))``, the output lost by removing the mask;
    - ``polycam+-``: ``w+ + w-``. The reference code sums the kept score and the removal
      drop (``s(x M) + s(x) - s(x (1 - M))``); referring the kept score to ``f(b)`` makes
      the sum vanish for an empty mask.

    Weights are signed (the reference rectifies ``w-`` and ``w+-``; with a softmax score its
    ``w+`` is positive anyway); ``S_l = ReLU(sum_k w_lk A_lk)`` then keeps net-positive cells.
    Fusion from deepest to shallowest: ``S = Up(S_deeper) * LocalNorm(S_l)``, ``Up`` bilinear
    with ``align_corners=False``. ``LocalNorm`` divides ``S_l`` by its mean over the window of
    ``S_l`` cells that one cell of the deeper map covers (2 x 2 after one 2x pooling), as in
    the reference ``local_relevance_normalization``: the deeper map already fixes how relevance
    splits between those windows, so the shallow map should only redistribute it within each.
    The fused map keeps the deepest map's units (``U_e/delta`` times its activation units).

    Args:
        model: Any module mapping ``(batch, 1, y, x)`` to ``(batch,)``.
        roughness: Heights ``(batch, 1, y, x)`` in delta.
        layers: Module names ordered shallow -> deep, each with a spatial output, resolution
            non-increasing (the paper takes the module before each downsampling).
        variants: Any of :data:`POLY_VARIANTS`; only the masked passes they need are run.
        baseline: Reference field, default zeros; any tensor broadcasting to ``roughness``.
        chunk: Largest number of masked inputs per forward pass.

    Returns:
        ``(prediction (batch,), {variant: map (batch, h0, w0)})`` at the first (shallowest)
        layer's resolution, rectified.
    """
    _check_variants(variants)
    x, b = _check_inputs(roughness, baseline, chunk)
    signs = sorted({sign for v in variants for sign in _SIGNS[v]})
    with eval_mode(model), torch.no_grad():
        y, acts = _activations(model, x, layers)
        _check_order(layers, acts)
        f_b, outs = _perturbed_outputs(model, x, b, acts, signs, chunk)
    weights = [_poly_weights(o, y, f_b) for o in outs]
    maps = {
        v: _fuse([_channel_map(w[v], a) for w, a in zip(weights, acts, strict=True)])
        for v in variants
    }
    return y, maps
