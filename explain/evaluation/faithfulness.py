"""Faithfulness of attribution maps for a scalar regression output: deletion/insertion and ROAD.

Notation: ``x`` roughness ``(batch, 1, y, x)`` in delta, ``b`` a baseline field of the same
shape, ``f`` the model's raw output (maximum vorticity in ``U_e/delta``), ``N = y * x`` cells.

Ranking: cells are ordered by the map, largest first; equal values are ordered uniformly at
random (a random permutation drawn from ``generator``, then a stable sort), so a constant map
gives a random order and the same generator state gives the same order.

Deletion / insertion (Petsiuk et al. 2018), regression form. At step ``t = 0..steps`` the top
``k_t = round(t N / steps)`` cells (halves rounded up) are replaced by the baseline (deletion)
or copied from ``x`` into the baseline (insertion). The score
``s(t) = (f(x_t) - f(b)) / (f(x) - f(b))`` is not clipped (removing roughness can raise the
maximum); it is NaN for every ``t`` where ``f(x) = f(b)`` exactly (the normalisation is
undefined), and so is the trapezoid AUC over ``t / steps`` in ``[0, 1]``. Samples with
``|f(x) - f(b)| < 0.1 target_std`` are flagged ``small_change``: their scores are finite but
dominated by the small denominator. ``x_0`` of the deletion curve is ``x`` and ``x_steps`` is
``b`` (the reverse for insertion), so those endpoints come from one evaluation of ``f(x)`` and
``f(b)`` per sample: ``2 steps`` forward inputs per sample in all.

The normalisation assumes ``f(x) > f(b)`` (deletion falls, insertion rises). Where
``f(x) < f(b)`` its sign flips: a signed map that ranks the cells raising ``f`` first then gives
a deletion curve above 1 (and a large deletion AUC) even when it is exact. Compare methods on
samples with ``f(x) > f(b)``, or read ``deletion_output`` in ``U_e/delta``.

ROAD lives in :mod:`explain.evaluation.road`; it shares the ranking (:func:`cell_order`).

Every perturbed input goes through the model in forward passes of at most ``chunk`` inputs,
built lazily one pass at a time, under ``torch.no_grad()``, in eval mode (each submodule's
train/eval flag restored on exit, also on error), on the device of the model's parameters.
Results are float64 tensors on the CPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from data.errors import InputError
from explain.batching import forward_rows, model_device
from explain.evaluation.streams import Generators, draw
from explain.hooks import eval_mode
from explain.inputs import expand_baseline, positive_int, roughness_batch

SMALL_CHANGE = 0.1  # flag |f(x) - f(b)| below this many target standard deviations


@dataclass(frozen=True)
class FaithfulnessCurves:
    """Deletion and insertion curves of a batch; shapes ``(batch, steps + 1)`` unless noted.

    Attributes:
        fractions: ``t / steps`` ``(steps + 1,)``, the AUC's abscissa.
        cells: Cells replaced at each step, ``round(t N / steps)`` ``(steps + 1,)``.
        deletion, insertion: Normalised scores ``s(t)``, unclipped; NaN where ``f(x) = f(b)``.
        deletion_output, insertion_output: Raw outputs ``f(x_t)`` in ``U_e/delta``.
        deletion_auc, insertion_auc: Trapezoid areas under the scores ``(batch,)``.
        f_x, f_b: ``f(x)`` and ``f(b)`` ``(batch,)`` in ``U_e/delta``.
        small_change: ``|f(x) - f(b)| < 0.1 target_std`` ``(batch,)``; all False without it.
    """

    fractions: torch.Tensor
    cells: torch.Tensor
    deletion: torch.Tensor
    insertion: torch.Tensor
    deletion_output: torch.Tensor
    insertion_output: torch.Tensor
    deletion_auc: torch.Tensor
    insertion_auc: torch.Tensor
    f_x: torch.Tensor
    f_b: torch.Tensor
    small_change: torch.Tensor


@dataclass(frozen=True)
class RandomReference:
    """AUCs of uniformly random orders: ``(permutations, batch)`` and per-sample statistics.

    The standard deviation is over permutations with Bessel's correction (NaN for one).
    """

    deletion_auc: torch.Tensor
    insertion_auc: torch.Tensor
    deletion_auc_mean: torch.Tensor
    deletion_auc_std: torch.Tensor
    insertion_auc_mean: torch.Tensor
    insertion_auc_std: torch.Tensor


def cell_order(maps: torch.Tensor, generator: Generators = None) -> torch.Tensor:
    """Flat cell indices ``(batch, y * x)`` by decreasing map value, ties in random order.

    ``generator``: one for the batch, or one per row (:mod:`explain.evaluation.streams`).
    """
    flat = maps.detach().reshape(maps.shape[0], -1).cpu()
    perm = draw("rand", flat.shape[0], flat.shape[1:], generator).argsort(dim=1)
    ranked = flat.gather(1, perm).argsort(dim=1, descending=True, stable=True)
    return perm.gather(1, ranked)


def positions(order: torch.Tensor) -> torch.Tensor:
    """Inverse of ``order``: each cell's position in the ranking ``(rows, N)``."""
    pos = torch.empty_like(order)
    pos.scatter_(1, order, torch.arange(order.shape[1]).expand_as(order).contiguous())
    return pos


def _counts(n_cells: int, steps: int) -> torch.Tensor:
    """``round(t N / steps)`` for ``t = 0..steps``, halves up, in exact integer arithmetic."""
    t = torch.arange(steps + 1)
    return (2 * t * n_cells + steps) // (2 * steps)


def _check_target_std(target_std: float | None) -> None:
    if target_std is not None and not target_std > 0:
        raise InputError(f"target_std must be > 0 (U_e/delta) or None, got {target_std!r}")


def check_inputs(
    x: torch.Tensor, maps: torch.Tensor | None, baseline: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Detached ``x`` ``(batch, 1, y, x)`` and the baseline expanded to it; ``maps`` checked."""
    x = roughness_batch(x, "x").detach()
    if maps is not None:
        want = (x.shape[0], *x.shape[2:])
        if not isinstance(maps, torch.Tensor) or tuple(maps.shape) != want:
            got = tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__
            raise InputError(f"maps must be (batch, y, x) = {want} like x, got {got}")
        if not torch.isfinite(maps).all():
            raise InputError("maps contain NaN or inf; rank cells by finite values only")
    if baseline is None:
        return x, None
    return x, expand_baseline(baseline, x)


def _masked_inputs(
    x: torch.Tensor, b: torch.Tensor, order: torch.Tensor, steps: int, chunk: int
) -> Iterator[torch.Tensor]:
    """Lazy inputs for every ranking row ``r`` (sample ``r % batch``), ``chunk`` at a time.

    Rows: ``x`` per ranking, ``b`` per ranking, deletion steps ``1..steps-1`` per ranking,
    then insertion steps ``1..steps-1``. A job is (sample, cells k, insertion?): a cell whose
    position is below ``k`` takes ``b`` in deletion and ``x`` in insertion.
    """
    rows, n_cells = order.shape
    inner = _counts(n_cells, steps)[1:-1]
    ids = torch.arange(rows)
    inner_ids = ids.repeat_interleave(steps - 1)
    job_row = torch.cat([ids, ids, inner_ids, inner_ids])
    job_k = torch.cat([torch.zeros(rows, dtype=torch.long), torch.full((rows,), n_cells)])
    job_k = torch.cat([job_k, inner.repeat(rows), inner.repeat(rows)])
    job_ins = torch.arange(job_row.shape[0]) >= 2 * rows + rows * (steps - 1)
    device, shape = x.device, x.shape[1:]
    pos = positions(order).to(device=device, dtype=torch.int32)
    xf, bf = x.reshape(x.shape[0], -1), b.reshape(b.shape[0], -1)

    def pieces() -> Iterator[torch.Tensor]:
        for start in range(0, job_row.shape[0], chunk):
            r = job_row[start : start + chunk].to(device)
            k = job_k[start : start + chunk].to(device)
            ins = job_ins[start : start + chunk].to(device)
            sample = r % x.shape[0]
            take_b = (pos[r] < k[:, None]) ^ ins[:, None]
            yield torch.where(take_b, bf[sample], xf[sample]).view(-1, *shape)

    return pieces()


def _curve_outputs(
    model: nn.Module, x: torch.Tensor, b: torch.Tensor, order: torch.Tensor, steps: int, chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw deletion and insertion outputs ``(rows, steps + 1)`` for each ranking row."""
    device = model_device(model, x.device)
    pieces = _masked_inputs(x.to(device), b.to(device), order, steps, chunk)
    with eval_mode(model), torch.no_grad():
        out = forward_rows(model, pieces, chunk).to("cpu", torch.float64)
    rows = order.shape[0]
    f_x, f_b, dels, ins = out.split([rows, rows, rows * (steps - 1), rows * (steps - 1)])
    deletion = torch.cat([f_x[:, None], dels.view(rows, -1), f_b[:, None]], dim=1)
    insertion = torch.cat([f_b[:, None], ins.view(rows, -1), f_x[:, None]], dim=1)
    return deletion, insertion


def _curves(
    deletion: torch.Tensor, insertion: torch.Tensor, n_cells: int, target_std: float | None
) -> FaithfulnessCurves:
    """Normalise raw outputs ``(batch, steps + 1)`` (``f(x)`` = deletion at 0, ``f(b)`` at 1)."""
    f_x, f_b = deletion[:, 0], deletion[:, -1]
    denom = (f_x - f_b)[:, None]

    def score(out: torch.Tensor) -> torch.Tensor:
        safe = torch.where(denom != 0, denom, torch.ones_like(denom))
        return torch.where(denom != 0, (out - f_b[:, None]) / safe, torch.nan)

    s_del, s_ins = score(deletion), score(insertion)
    steps = deletion.shape[1] - 1
    small = torch.zeros_like(f_x, dtype=torch.bool)
    if target_std is not None:
        small = (f_x - f_b).abs() < SMALL_CHANGE * target_std
    return FaithfulnessCurves(
        fractions=torch.linspace(0, 1, steps + 1, dtype=torch.float64),
        cells=_counts(n_cells, steps),
        deletion=s_del,
        insertion=s_ins,
        deletion_output=deletion,
        insertion_output=insertion,
        deletion_auc=torch.trapezoid(s_del, dx=1 / steps, dim=1),
        insertion_auc=torch.trapezoid(s_ins, dx=1 / steps, dim=1),
        f_x=f_x,
        f_b=f_b,
        small_change=small,
    )


def deletion_insertion(
    model: nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    baseline: torch.Tensor,
    *,
    steps: int = 100,
    chunk: int = 1024,
    generator: Generators = None,
    target_std: float | None = None,
) -> FaithfulnessCurves:
    """Deletion and insertion curves of ``maps``, all perturbed inputs in batched passes.

    Args:
        model: Any module mapping ``(batch, 1, y, x)`` to ``(batch,)`` (raw regression output).
        x: Roughness ``(batch, 1, y, x)`` in delta.
        maps: Attributions ``(batch, y, x)`` at input resolution; larger = ranked first.
        baseline: Field that broadcasts to ``x`` (e.g. :func:`smooth_wall`, :func:`blurred`).
        steps: Number of steps ``n``; the curves have ``n + 1`` points.
        chunk: Largest number of inputs per forward pass.
        generator: Source of the random tie-breaking: a CPU generator, or one per sample.
        target_std: ``sigma_y`` in ``U_e/delta``; enables the ``small_change`` flag.

    Returns:
        :class:`FaithfulnessCurves` (see the module docstring for the definitions).
    """
    x, b = check_inputs(x, maps, baseline)
    positive_int("steps", steps)
    positive_int("chunk", chunk)
    _check_target_std(target_std)
    order = cell_order(maps, generator)
    deletion, insertion = _curve_outputs(model, x, b, order, steps, chunk)
    return _curves(deletion, insertion, order.shape[1], target_std)


def random_reference(
    model: nn.Module,
    x: torch.Tensor,
    baseline: torch.Tensor,
    *,
    steps: int = 100,
    permutations: int = 10,
    chunk: int = 1024,
    generator: Generators = None,
) -> RandomReference:
    """Deletion and insertion AUCs of ``permutations`` uniformly random orders per sample.

    The same definitions as :func:`deletion_insertion`; all permutations of all samples go
    through the model together, in passes of at most ``chunk`` inputs. With one generator
    per sample, sample ``i``'s orders come from its own, in turn.
    """
    x, b = check_inputs(x, None, baseline)
    positive_int("steps", steps)
    positive_int("permutations", permutations)
    positive_int("chunk", chunk)
    rows, n_cells = permutations * x.shape[0], x.shape[2] * x.shape[3]
    # float64 keys: ties (which would favour low indices) are vanishingly rare
    order = draw("rand", rows, (n_cells,), generator, row_stream=torch.arange(rows) % x.shape[0])
    order = order.argsort(dim=1)
    deletion, insertion = _curve_outputs(model, x, b, order, steps, chunk)
    curves = _curves(deletion, insertion, n_cells, None)
    d_auc = curves.deletion_auc.view(permutations, -1)
    i_auc = curves.insertion_auc.view(permutations, -1)
    return RandomReference(
        deletion_auc=d_auc,
        insertion_auc=i_auc,
        deletion_auc_mean=d_auc.mean(dim=0),
        deletion_auc_std=d_auc.std(dim=0),
        insertion_auc_mean=i_auc.mean(dim=0),
        insertion_auc_std=i_auc.std(dim=0),
    )


def deletion_insertion_loop(
    model: nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    baseline: torch.Tensor,
    steps: int = 100,
    generator: torch.Generator | None = None,
    *,
    target_std: float | None = None,
) -> FaithfulnessCurves:
    """Reference implementation of :func:`deletion_insertion`: one sample and step per pass.

    Evaluates every point of both curves, the endpoints included, with ``2 (steps + 1)``
    forward passes of one input per sample; same ranking (same ``generator`` state, same
    ties) and same normalisation. Slow; for tests and benchmarks.
    """
    x, b = check_inputs(x, maps, baseline)
    positive_int("steps", steps)
    _check_target_std(target_std)
    order = cell_order(maps, generator)
    batch, n_cells = order.shape
    device = model_device(model, x.device)
    outputs = torch.empty(2, batch, steps + 1, dtype=torch.float64)
    with eval_mode(model), torch.no_grad():
        for i in range(batch):
            xi, bi = x[i].reshape(-1).to(device), b[i].reshape(-1).to(device)
            for t in range(steps + 1):
                top = order[i, : int(t * n_cells / steps + 0.5)].to(device)
                deleted, inserted = xi.clone(), bi.clone()
                deleted[top] = bi[top]
                inserted[top] = xi[top]
                for kind, field in enumerate((deleted, inserted)):
                    outputs[kind, i, t] = model(field.view(1, *x.shape[1:])).item()
    return _curves(outputs[0], outputs[1], n_cells, target_std)
