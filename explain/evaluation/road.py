"""ROAD (Rong et al. 2022), regression form: remove cells by the map, impute, re-predict.

Cells are ranked as for deletion (:func:`explain.evaluation.faithfulness.cell_order`: largest
first, ties in random order). Removed cells are filled by noisy linear imputation instead of
a baseline, so the perturbed fields stay in the training distribution and the imputation does
not leak the removed cells' shape. See :func:`road` and :func:`noisy_linear_imputation`.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from scipy import sparse
from scipy.sparse.linalg import spsolve
from torch import nn

from data.errors import InputError
from explain.batching import forward_rows, model_device
from explain.evaluation.faithfulness import cell_order, check_inputs, positions
from explain.evaluation.streams import Generators, draw, rows_of
from explain.hooks import eval_mode
from explain.inputs import positive_int

ROAD_PERCENTAGES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
# (dy, dx, weight): ROAD's 8-neighbour stencil, 1/6 for edge and 1/12 for diagonal neighbours
NEIGHBOURS = tuple(
    (dy, dx, 1 / 12 if dy and dx else 1 / 6) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx
)
_SOLVE_FIELDS = 64  # fields per sparse solve: bounds the factorisation's memory


@dataclass(frozen=True)
class RoadScores:
    """ROAD curves ``(batch, P)`` over ``percentages`` ``(P,)`` and their summaries ``(batch,)``.

    ``morf``/``lerf`` are ``(f(x_p) - f(x)) / scale``; ``*_output`` the raw ``f(x_p)`` in
    ``U_e/delta``; ``combined = (lerf_mean - morf_mean) / 2``, higher = better attribution.
    """

    percentages: torch.Tensor
    morf: torch.Tensor
    lerf: torch.Tensor
    morf_output: torch.Tensor
    lerf_output: torch.Tensor
    morf_mean: torch.Tensor
    lerf_mean: torch.Tensor
    combined: torch.Tensor
    f_x: torch.Tensor
    scale: torch.Tensor


def _imputation_system(
    values: np.ndarray, removed: np.ndarray
) -> tuple[sparse.csc_matrix, np.ndarray]:
    """``L u = r`` for the removed cells of fields ``(n, y, x)``, block-diagonal over fields.

    ``L`` is the weighted graph Laplacian restricted to the unknowns: diagonal = sum of the
    weights of the in-grid neighbours, ``-w`` to each removed neighbour; ``r`` = weighted sum
    of the known neighbours. Unknowns are numbered in C order of ``np.nonzero(removed)``.
    """
    s, y, x = np.nonzero(removed)
    m = s.shape[0]
    index = np.full(removed.shape, -1)
    index[s, y, x] = np.arange(m)
    diag, rhs = np.zeros(m), np.zeros(m)
    rows, cols, vals = [np.arange(m)], [np.arange(m)], []
    for dy, dx, w in NEIGHBOURS:
        ny, nx = y + dy, x + dx
        i = np.nonzero((ny >= 0) & (ny < removed.shape[1]) & (nx >= 0) & (nx < removed.shape[2]))
        i = i[0]
        diag[i] += w
        unknown = removed[s[i], ny[i], nx[i]]
        iu, ik = i[unknown], i[~unknown]
        rows.append(iu)
        cols.append(index[s[iu], ny[iu], nx[iu]])
        vals.append(np.full(iu.shape[0], -w))
        rhs[ik] += w * values[s[ik], ny[ik], nx[ik]]
    data = np.concatenate([diag, *vals])
    matrix = sparse.csc_matrix((data, (np.concatenate(rows), np.concatenate(cols))), (m, m))
    return matrix, rhs


def _field_key(values: np.ndarray, removed: np.ndarray) -> bytes:
    """A digest of one field's values and removed cells (shape included), for ``solutions``."""
    digest = hashlib.blake2b(digest_size=32)
    digest.update(np.asarray(values.shape, np.int64).tobytes())
    digest.update(np.ascontiguousarray(values).tobytes())
    digest.update(np.packbits(removed).tobytes())
    return digest.digest()


def noisy_linear_imputation(
    fields: torch.Tensor,
    removed: torch.Tensor,
    *,
    noise_std: float = 0.01,
    generator: Generators = None,
    workers: int | None = None,
    solutions: dict[bytes, np.ndarray] | None = None,
) -> torch.Tensor:
    """ROAD's noisy linear imputation of the ``removed`` cells of fields ``(n, y, x)``.

    Each removed cell becomes the weighted mean of its in-grid 8 neighbours (1/6 edge, 1/12
    diagonal, normalised by the weights present), solved jointly for all removed cells of a
    field (unknown neighbours coupled, known ones on the right-hand side) with a direct
    sparse solve per field (built 64 fields at a time). The system is
    symmetric positive definite whenever a field keeps at least one known cell (every
    8-connected group of removed cells then borders a known cell). A field with every cell
    removed has nothing to impute from and is filled with ``0`` (the smooth wall).

    Gaussian noise of standard deviation ``noise_std`` times the field's own standard
    deviation (over all its cells, before removal) is added to the imputed cells only; ROAD
    used 0.01 on unit-variance images. Known cells are returned unchanged. ``generator`` is
    one CPU generator or one per field.

    ``workers`` threads (default: one per core) solve the blocks side by side; the result
    does not depend on it. ``solutions``, a dict kept across calls, reuses the solve of a
    field whose values and removed cells were solved before (another method's map often
    removes the same cells of a design): keyed by a 32-byte BLAKE2b digest of both, and the
    same numbers as solving again. The noise is drawn afresh either way.

    Returns:
        Imputed fields ``(n, y, x)``, dtype and device of ``fields``.
    """
    if fields.dim() != 3 or removed.shape != fields.shape:
        raise InputError(
            f"fields (n, y, x) and removed of the same shape expected, got "
            f"{tuple(fields.shape)} and {tuple(removed.shape)}"
        )
    if not noise_std >= 0:
        raise InputError(f"noise_std must be >= 0 (fraction of the field's std), got {noise_std}")
    values = fields.detach().to("cpu", torch.float64).numpy()
    mask = removed.detach().to("cpu", torch.bool).numpy().copy()
    out = values.copy()
    full = mask.all(axis=(1, 2))
    out[full] = 0.0
    mask[full] = False
    keys = None
    if solutions is not None:
        keys = [_field_key(v, r) for v, r in zip(values, mask, strict=True)]
    todo = []  # fields with unknowns and no stored solve
    for i in np.flatnonzero(mask.any(axis=(1, 2))):
        if keys is not None and keys[i] in solutions:
            out[i][mask[i]] = solutions[keys[i]]
        else:
            todo.append(i)
    parts = [todo[start : start + _SOLVE_FIELDS] for start in range(0, len(todo), _SOLVE_FIELDS)]

    def solve(part: list[int]) -> list[np.ndarray]:
        # built for the whole part at once (numpy's per-call cost), solved field by field:
        # each field's unknowns are a diagonal block of their own, so its solution does not
        # depend on which fields share its part (nor on the batch or the process it is in)
        matrix, rhs = _imputation_system(values[part], mask[part])
        edges = np.concatenate([[0], np.cumsum(mask[part].sum(axis=(1, 2)))]).tolist()
        solution = []
        for a, b in itertools.pairwise(edges):  # every field of a part has unknowns
            # the field's diagonal block: its columns hold rows a..b-1 only
            lo, hi = matrix.indptr[a], matrix.indptr[b]
            block = sparse.csc_matrix(
                (matrix.data[lo:hi], matrix.indices[lo:hi] - a, matrix.indptr[a : b + 1] - lo),
                shape=(b - a, b - a),
            )
            solution.append(spsolve(block, rhs[a:b]))
        return solution

    # the parts are independent and SuperLU releases the GIL: one thread per core solves them
    # side by side (the same solutions, bit for bit; the solve is about half of an evaluation)
    threads = max(1, min(len(parts), workers or os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for part, solution in zip(parts, pool.map(solve, parts), strict=True):
            for i, u in zip(part, solution, strict=True):
                out[i][mask[i]] = u
                if keys is not None:
                    solutions[keys[i]] = u
    mask[full] = True
    if noise_std > 0:
        sigma = noise_std * values.std(axis=(1, 2))
        noise = draw("randn", len(values), values.shape[1:], generator).numpy()
        out += np.where(mask, sigma[:, None, None] * noise, 0.0)
    return torch.from_numpy(out).to(device=fields.device, dtype=fields.dtype)


def road(
    model: nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    *,
    percentages: Sequence[float] = ROAD_PERCENTAGES,
    noise_std: float = 0.01,
    scale: float | torch.Tensor | None = None,
    chunk: int = 1024,
    generator: Generators = None,
    solutions: dict[bytes, np.ndarray] | None = None,
) -> RoadScores:
    """ROAD (Rong et al. 2022), regression form: MoRF and LeRF with noisy linear imputation.

    For each fraction ``p``, ``k = round(p N)`` cells (halves up) are removed and imputed
    with :func:`noisy_linear_imputation`: MoRF removes the ``k`` highest-ranked cells of the
    map, LeRF the ``k`` lowest (ties in random order, as for deletion). ROAD scores the class
    probability; for a regression output the score is the change relative to the
    unperturbed prediction, ``r(p) = (f(x_p) - f(x)) / scale``, signed (a good map makes
    MoRF fall and leaves LeRF near 0 or above). ``combined = (mean_p LeRF - mean_p MoRF) / 2``
    as in ROAD, in the convention higher = better attribution; ``f(x)`` cancels in it.

    Args:
        model: Any module mapping ``(batch, 1, y, x)`` to ``(batch,)``.
        x: Roughness ``(batch, 1, y, x)`` in delta.
        maps: Attributions ``(batch, y, x)``; larger = more relevant.
        percentages: Fractions ``p`` in ``[0, 1]`` of cells removed.
        noise_std: Imputation noise as a fraction of each field's standard deviation.
        scale: ``U_e/delta``; a number (e.g. the target std ``sigma_y``) or ``(batch,)``.
            Default ``|f(x)|`` per sample, so ``r`` is a fraction of the prediction. Scores
            are NaN where the scale is 0.
        chunk: Largest number of inputs per forward pass (and of fields per imputation).
        generator: Source of the tie-breaking and the noise: a CPU generator, or one per
            sample (each sample's fields then take their noise from its own, in job order).
        solutions: A dict shared by calls on the same designs (e.g. one per method) to reuse
            the imputation's solves; see :func:`noisy_linear_imputation`.
    """
    x, _ = check_inputs(x, maps, None)
    positive_int("chunk", chunk)
    p = torch.as_tensor(list(percentages), dtype=torch.float64)
    if p.dim() != 1 or not p.numel() or not ((p >= 0) & (p <= 1)).all():
        raise InputError(f"percentages must be fractions in [0, 1], got {list(percentages)}")
    batch, n_cells = x.shape[0], x.shape[2] * x.shape[3]
    pos = positions(cell_order(maps, generator))
    counts = torch.floor(p * n_cells + 0.5).long()
    # jobs (percentage, MoRF/LeRF, sample) in that order
    job_k = counts.repeat_interleave(2 * batch)
    job_lerf = torch.arange(2).repeat_interleave(batch).repeat(p.numel()).bool()
    job_sample = torch.arange(batch).repeat(2 * p.numel())
    device = model_device(model, x.device)
    fields = x[:, 0].to("cpu")

    def pieces() -> Iterator[torch.Tensor]:
        yield x.to(device)
        for start in range(0, job_k.shape[0], chunk):
            k, lerf = job_k[start : start + chunk, None], job_lerf[start : start + chunk, None]
            sample = job_sample[start : start + chunk]
            removed = torch.where(lerf, pos[sample] >= n_cells - k, pos[sample] < k)
            imputed = noisy_linear_imputation(
                fields[sample], removed.view(-1, *x.shape[2:]), noise_std=noise_std,
                generator=rows_of(generator, sample), solutions=solutions,
            )  # fmt: skip
            yield imputed.to(device)[:, None]

    with eval_mode(model), torch.no_grad():
        out = forward_rows(model, pieces(), chunk).to("cpu", torch.float64)
    return _road_scores(p, out[:batch], out[batch:].view(-1, 2, batch), scale)


def _road_scores(
    p: torch.Tensor, f_x: torch.Tensor, outputs: torch.Tensor, scale: float | torch.Tensor | None
) -> RoadScores:
    """Scores from ``f(x)`` ``(batch,)`` and outputs ``(P, MoRF/LeRF, batch)``."""
    if scale is None:
        scale_t = f_x.abs()
    else:
        scale_t = torch.as_tensor(scale, dtype=torch.float64).cpu().expand_as(f_x)
    if (scale_t < 0).any() or not torch.isfinite(scale_t).all():
        raise InputError(f"scale must be finite and >= 0 (U_e/delta), got {scale!r}")
    safe = torch.where(scale_t > 0, scale_t, torch.ones_like(scale_t))[:, None]

    def score(out: torch.Tensor) -> torch.Tensor:
        r = (out - f_x[:, None]) / safe
        return torch.where(scale_t[:, None] > 0, r, torch.nan)

    morf_out, lerf_out = outputs[:, 0].T, outputs[:, 1].T
    morf, lerf = score(morf_out), score(lerf_out)
    return RoadScores(
        percentages=p,
        morf=morf,
        lerf=lerf,
        morf_output=morf_out,
        lerf_output=lerf_out,
        morf_mean=morf.mean(dim=1),
        lerf_mean=lerf.mean(dim=1),
        combined=(lerf.mean(dim=1) - morf.mean(dim=1)) / 2,
        f_x=f_x,
        scale=scale_t,
    )
