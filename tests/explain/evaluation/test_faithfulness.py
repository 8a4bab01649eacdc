"""Deletion/insertion (faithfulness.py) and ROAD (road.py): hand cases, a loop, side effects."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import ndimage, sparse
from scipy.sparse.linalg import spsolve
from torch import nn

from data.errors import InputError
from explain.baselines import blurred, smooth_wall
from explain.evaluation.faithfulness import (
    cell_order,
    deletion_insertion,
    deletion_insertion_loop,
    random_reference,
)
from explain.evaluation.road import noisy_linear_imputation, road
from explain.evaluation.streams import design_streams

X2 = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])  # (1, 1, 2, 2)
W2 = torch.tensor([[2.0, -1.0], [0.5, 1.0]])  # contributions w x = [[2, -2], [1.5, 4]]


class Linear(nn.Module):
    """``f(x) = sum(w x) + bias``: its perfect attribution is ``w x``."""

    def __init__(self, weight: torch.Tensor, bias: float = 0.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.clone())
        self.bias = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x[:, 0] * self.weight).sum(dim=(1, 2)) + self.bias


class Constant(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.tensor(3.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.value.expand(x.shape[0])


def conv_model(batchnorm: bool = False) -> nn.Sequential:
    """conv -> (BatchNorm, Dropout) -> ReLU -> max pool -> flatten -> linear -> (batch,)."""
    torch.manual_seed(0)
    extra = [nn.BatchNorm2d(4), nn.Dropout(0.5)] if batchnorm else []
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        *extra,
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 1),
        nn.Flatten(0),
    )


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def linear_case(size: int = 8, batch: int = 3) -> tuple[Linear, torch.Tensor, torch.Tensor]:
    """Mixed-sign weights, heights >= 0, and f(x) > f(0) for every sample."""
    gen = seeded(1)
    w = torch.randn(size, size, generator=gen) + 0.5
    x = torch.rand(batch, 1, size, size, generator=gen)
    model = Linear(w, bias=0.3)
    assert (model(x) > model(torch.zeros_like(x))).all()
    return model, x, w * x[:, 0]


# --- baselines ---------------------------------------------------------------------------


def test_smooth_wall_is_zeros() -> None:
    x = torch.randn(2, 1, 4, 5)
    assert torch.equal(smooth_wall(x), torch.zeros_like(x))


@pytest.mark.parametrize(("shape", "sigma"), [((2, 1, 16, 20), 4.0), ((1, 1, 5, 6), 4.0)])
def test_blurred_matches_scipy_gaussian_filter(shape: tuple[int, ...], sigma: float) -> None:
    x = torch.randn(shape, generator=seeded(), dtype=torch.float64)
    out = blurred(x, sigma)
    for i in range(shape[0]):
        ref = ndimage.gaussian_filter(x[i, 0].numpy(), sigma, mode="reflect", truncate=3.0)
        np.testing.assert_allclose(out[i, 0].numpy(), ref, atol=1e-12)


def test_blurred_keeps_constants_and_sigma_zero_copies() -> None:
    x = torch.full((1, 1, 6, 7), 2.5)
    torch.testing.assert_close(blurred(x), x)
    y = torch.randn(1, 1, 6, 7)
    assert torch.equal(blurred(y, 0.0), y)


# --- deletion / insertion: hand computations ---------------------------------------------


def test_deletion_insertion_by_hand_2x2() -> None:
    # order 4 (cell 3), 2 (0), 1.5 (2), -2 (1); f(x) = 5.5, f(0) = 0
    curves = deletion_insertion(Linear(W2), X2, W2 * X2[:, 0], smooth_wall(X2), steps=4)
    torch.testing.assert_close(curves.cells, torch.tensor([0, 1, 2, 3, 4]))
    torch.testing.assert_close(
        curves.deletion_output[0], torch.tensor([5.5, 1.5, -0.5, -2, 0]).double()
    )
    torch.testing.assert_close(curves.deletion[0], torch.tensor([11, 3, -1, -4, 0]).double() / 11)
    torch.testing.assert_close(curves.insertion[0], torch.tensor([0, 8, 12, 15, 11]).double() / 11)
    torch.testing.assert_close(curves.deletion_auc, torch.tensor([7 / 88]).double())
    torch.testing.assert_close(curves.insertion_auc, torch.tensor([81 / 88]).double())
    assert curves.insertion.max() > 1  # not clipped
    assert curves.f_x.item() == 5.5
    assert curves.f_b.item() == 0
    assert not curves.small_change.any()


def test_deletion_insertion_by_hand_3x3_with_baseline() -> None:
    # f = sum(x), x = 0..8, b = 1: f(x) = 36, f(b) = 9; thirds of the cells per step
    x = torch.arange(9.0).view(1, 1, 3, 3)
    model = Linear(torch.ones(3, 3))
    curves = deletion_insertion(model, x, x[:, 0], torch.ones(1, 1, 3, 3), steps=3)
    torch.testing.assert_close(curves.deletion[0], torch.tensor([1, 1 / 3, 0, 0]).double())
    torch.testing.assert_close(curves.insertion[0], torch.tensor([0, 2 / 3, 1, 1]).double())
    torch.testing.assert_close(curves.deletion_auc, torch.tensor([5 / 18]).double())
    torch.testing.assert_close(curves.insertion_auc, torch.tensor([13 / 18]).double())


@pytest.mark.parametrize(("size", "steps", "cells"), [(2, 3, [0, 1, 3, 4]), (3, 2, [0, 5, 9])])
def test_cell_counts_round_halves_up(size: int, steps: int, cells: list[int]) -> None:
    x = torch.randn(1, 1, size, size)
    model = Linear(torch.ones(size, size))
    curves = deletion_insertion(model, x, x[:, 0], smooth_wall(x), steps=steps)
    assert curves.cells.tolist() == cells
    loop = deletion_insertion_loop(model, x, x[:, 0], smooth_wall(x), steps)
    torch.testing.assert_close(curves.deletion, loop.deletion)


def test_perfect_map_beats_reversed_and_random() -> None:
    model, x, perfect = linear_case()
    b = smooth_wall(x)
    good = deletion_insertion(model, x, perfect, b, steps=20, generator=seeded())
    bad = deletion_insertion(model, x, -perfect, b, steps=20, generator=seeded())
    rand = random_reference(model, x, b, steps=20, permutations=10, generator=seeded())
    assert (good.deletion_auc < rand.deletion_auc_mean).all()
    assert (rand.deletion_auc_mean < bad.deletion_auc).all()
    assert (good.insertion_auc > rand.insertion_auc_mean).all()
    assert (rand.insertion_auc_mean > bad.insertion_auc).all()


@pytest.mark.parametrize("baseline", ["smooth", "blurred"])
def test_insertion_plus_deletion_is_one_for_a_linear_model(baseline: str) -> None:
    model, x, perfect = linear_case()
    b = smooth_wall(x) if baseline == "smooth" else blurred(x, 1.0)
    for maps in (perfect, -perfect, torch.randn(perfect.shape, generator=seeded(3))):
        curves = deletion_insertion(model, x, maps, b, steps=16, generator=seeded())
        total = curves.deletion + curves.insertion
        torch.testing.assert_close(total, torch.ones_like(total), atol=1e-5, rtol=0)


# --- degenerate outputs ------------------------------------------------------------------


def test_constant_model_is_flagged_and_nan() -> None:
    x = torch.randn(2, 1, 4, 4)
    curves = deletion_insertion(Constant(), x, x[:, 0], smooth_wall(x), steps=5, target_std=1.0)
    assert curves.small_change.all()
    assert torch.isnan(curves.deletion).all()
    assert torch.isnan(curves.insertion).all()
    assert torch.isnan(curves.deletion_auc).all()
    assert torch.isnan(curves.insertion_auc).all()
    unflagged = deletion_insertion(Constant(), x, x[:, 0], smooth_wall(x), steps=5)
    assert not unflagged.small_change.any()


def test_equal_endpoints_give_nan_not_inf() -> None:
    # f(x) = 1 - 1 = 0 = f(0) while the intermediate steps are +-1
    x = torch.tensor([[[[1.0, -1.0], [0.0, 0.0]]]])
    curves = deletion_insertion(Linear(torch.ones(2, 2)), x, x[:, 0], smooth_wall(x), steps=4)
    assert curves.deletion_output[0, 1] == -1
    assert torch.isnan(curves.deletion).all()
    assert not torch.isinf(curves.deletion).any()


def test_small_change_threshold() -> None:
    x = torch.tensor([0.05, 0.2]).view(2, 1, 1, 1)
    curves = deletion_insertion(Linear(torch.ones(1, 1)), x, x[:, 0], 0, steps=1, target_std=1.0)
    assert curves.small_change.tolist() == [True, False]
    with pytest.raises(InputError, match="target_std"):
        deletion_insertion(Linear(torch.ones(1, 1)), x, x[:, 0], 0, target_std=0.0)


# --- ranking ---------------------------------------------------------------------------


def test_ties_are_broken_randomly_and_reproducibly() -> None:
    flat = torch.zeros(1, 4, 4)
    assert torch.equal(cell_order(flat, seeded(0)), cell_order(flat, seeded(0)))
    assert not torch.equal(cell_order(flat, seeded(0)), cell_order(flat, seeded(1)))
    seen = {tuple(cell_order(torch.zeros(1, 1, 3), seeded(s))[0].tolist()) for s in range(100)}
    assert seen == set(itertools.permutations(range(3)))
    model, x, _ = linear_case(size=4, batch=1)
    a, b, c = (
        deletion_insertion(model, x, flat, smooth_wall(x), steps=8, generator=seeded(s))
        for s in (0, 0, 1)
    )
    assert torch.equal(a.deletion, b.deletion)
    assert not torch.equal(a.deletion, c.deletion)


def test_order_is_descending_with_ties_grouped() -> None:
    maps = torch.randint(0, 4, (3, 5, 5), generator=seeded()).float()
    order = cell_order(maps, seeded())
    ranked = maps.view(3, -1).gather(1, order)
    assert (ranked[:, :-1] >= ranked[:, 1:]).all()
    assert (order.sort(dim=1).values == torch.arange(25)).all()


# --- batched == per-sample loop ----------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 13, 100_000])
def test_batched_equals_loop(counting_model: type, chunk: int) -> None:
    model = counting_model(conv_model().double())
    x = torch.randn(3, 1, 8, 8, generator=seeded(), dtype=torch.float64)
    maps = torch.randn(3, 8, 8, generator=seeded(1)).round().double()  # with ties
    b = blurred(x, 1.5)
    curves = deletion_insertion(model, x, maps, b, steps=10, chunk=chunk, generator=seeded(2))
    assert max(model.sizes) <= chunk
    assert sum(model.sizes) == 3 * 2 * 10
    loop = deletion_insertion_loop(model, x, maps, b, 10, seeded(2))
    for name in ("deletion", "insertion", "deletion_output", "insertion_output", "f_x", "f_b"):
        torch.testing.assert_close(getattr(curves, name), getattr(loop, name), atol=1e-10, rtol=0)
    torch.testing.assert_close(curves.deletion_auc, loop.deletion_auc, atol=1e-10, rtol=0)
    torch.testing.assert_close(curves.insertion_auc, loop.insertion_auc, atol=1e-10, rtol=0)


def test_batched_equals_loop_in_float32() -> None:
    model = conv_model()
    x = torch.randn(2, 1, 8, 8, generator=seeded())
    maps = torch.randn(2, 8, 8, generator=seeded(1))
    curves = deletion_insertion(model, x, maps, smooth_wall(x), steps=6, chunk=5)
    loop = deletion_insertion_loop(model, x, maps, smooth_wall(x), 6)
    torch.testing.assert_close(curves.deletion_output, loop.deletion_output, atol=1e-5, rtol=0)
    torch.testing.assert_close(curves.insertion_output, loop.insertion_output, atol=1e-5, rtol=0)


def test_random_reference_shapes_and_reproducibility() -> None:
    model, x, _ = linear_case()
    a = random_reference(model, x, smooth_wall(x), steps=8, permutations=4, generator=seeded())
    b = random_reference(model, x, smooth_wall(x), steps=8, permutations=4, generator=seeded())
    assert a.deletion_auc.shape == (4, 3)
    assert a.insertion_auc_std.shape == (3,)
    assert torch.equal(a.deletion_auc, b.deletion_auc)
    torch.testing.assert_close(a.deletion_auc_mean, a.deletion_auc.mean(dim=0))
    assert (a.deletion_auc_std > 0).all()


# --- imputation --------------------------------------------------------------------------


def direct_imputation(field: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """One field, cell by cell: ``sum_n w_n (u_c - v_n) = 0`` solved with ``spsolve``."""
    ny, nx = field.shape
    cells = [(y, x) for y in range(ny) for x in range(nx) if removed[y, x]]
    index = {c: i for i, c in enumerate(cells)}
    matrix, rhs = sparse.lil_matrix((len(cells), len(cells))), np.zeros(len(cells))
    for (y, x), i in index.items():
        for dy, dx in itertools.product((-1, 0, 1), repeat=2):
            yy, xx, w = y + dy, x + dx, (1 / 12 if dy and dx else 1 / 6)
            if (dy, dx) == (0, 0) or not (0 <= yy < ny and 0 <= xx < nx):
                continue
            matrix[i, i] += w
            if removed[yy, xx]:
                matrix[i, index[(yy, xx)]] -= w
            else:
                rhs[i] += w * field[yy, xx]
    out = field.copy()
    if cells:
        out[removed] = spsolve(matrix.tocsc(), rhs)
    return out


@pytest.mark.parametrize(
    ("n", "size", "p"), [(3, (7, 9), 0.3), (3, (7, 9), 0.8), (70, (4, 5), 0.5)]
)
def test_imputation_matches_direct_spsolve(n: int, size: tuple[int, int], p: float) -> None:
    fields = torch.randn(n, *size, generator=seeded(), dtype=torch.float64)
    removed = torch.rand(n, *size, generator=seeded(1)) < p
    removed[0, 0, 0] = False  # keep one known cell in the first field whatever p is
    out = noisy_linear_imputation(fields, removed, noise_std=0.0)
    for i in range(n):
        ref = direct_imputation(fields[i].numpy(), removed[i].numpy())
        np.testing.assert_allclose(out[i].numpy(), ref, atol=1e-10)


def test_imputation_reproduces_a_linear_ramp_inside() -> None:
    axes = torch.arange(10, dtype=torch.float64), torch.arange(12, dtype=torch.float64)
    y, x = torch.meshgrid(*axes, indexing="ij")
    ramp = (0.3 * y - 0.7 * x + 2.0)[None]
    removed = torch.zeros(1, 10, 12, dtype=torch.bool)
    removed[0, 2:7, 3:9] = True  # a block with coupled unknowns
    removed[0, 8, 1:11:2] = True  # isolated cells, away from the border
    out = noisy_linear_imputation(ramp, removed, noise_std=0.0)
    torch.testing.assert_close(out, ramp, atol=1e-12, rtol=0)
    noisy = noisy_linear_imputation(ramp + 0, removed, noise_std=0.1, generator=seeded())
    assert torch.equal(noisy[~removed], ramp[~removed])


def test_imputation_noise_is_relative_and_only_on_removed_cells() -> None:
    fields = 3.0 * torch.randn(2, 40, 40, generator=seeded(), dtype=torch.float64)
    removed = torch.rand(2, 40, 40, generator=seeded(1)) < 0.5
    clean = noisy_linear_imputation(fields, removed, noise_std=0.0)
    noisy = noisy_linear_imputation(fields, removed, noise_std=0.2, generator=seeded(2))
    again = noisy_linear_imputation(fields, removed, noise_std=0.2, generator=seeded(2))
    assert torch.equal(noisy, again)
    assert torch.equal(noisy[~removed], fields[~removed])
    for i in range(2):
        spread = (noisy[i] - clean[i])[removed[i]].std() / fields[i].std()
        assert 0.18 < spread < 0.22


def test_imputation_of_a_fully_removed_field_is_zero() -> None:
    fields = torch.randn(2, 5, 5, generator=seeded(), dtype=torch.float64)
    removed = torch.ones(2, 5, 5, dtype=torch.bool)
    removed[1, 2, 2] = False
    out = noisy_linear_imputation(fields, removed, noise_std=0.0)
    assert torch.equal(out[0], torch.zeros(5, 5, dtype=torch.float64))
    ref = direct_imputation(fields[1].numpy(), removed[1].numpy())
    np.testing.assert_allclose(out[1].numpy(), ref, atol=1e-10)


def test_imputation_reuses_stored_solves_with_the_same_numbers(monkeypatch) -> None:
    """A field solved before (same values, same removed cells) is not solved again; a changed
    value or a changed cell is. The noise is drawn afresh either way."""
    import explain.evaluation.road as road_module

    fields = torch.randn(4, 9, 11, generator=seeded(), dtype=torch.float64)
    removed = torch.rand(4, 9, 11, generator=seeded(1)) < 0.4
    solves = []
    real = road_module.spsolve
    monkeypatch.setattr(road_module, "spsolve", lambda a, b: solves.append(1) or real(a, b))
    plain = noisy_linear_imputation(fields, removed, noise_std=0.1, generator=seeded(2))
    assert len(solves) == 4
    store: dict = {}
    first = noisy_linear_imputation(
        fields, removed, noise_std=0.1, generator=seeded(2), solutions=store
    )
    assert torch.equal(first, plain)
    assert len(solves) == 8
    assert len(store) == 4
    again = noisy_linear_imputation(
        fields, removed, noise_std=0.1, generator=seeded(2), solutions=store
    )
    assert torch.equal(again, plain)
    assert len(solves) == 8  # all four from the store
    other = removed.clone()
    other[1, 4, 5] = ~other[1, 4, 5]
    moved = fields.clone()
    moved[2, 0, 0] += 1e-12
    out = noisy_linear_imputation(moved, other, noise_std=0.0, solutions=store)
    assert len(solves) == 10  # fields 1 and 2 changed
    torch.testing.assert_close(out, noisy_linear_imputation(moved, other, noise_std=0.0))


def test_road_with_a_shared_store_equals_road_without() -> None:
    model, x, perfect = sensor_case()
    store: dict = {}
    for maps in (perfect, perfect, -perfect):
        a = road(model, x, maps, generator=seeded(), solutions=store)
        b = road(model, x, maps, generator=seeded())
        assert torch.equal(a.morf_output, b.morf_output)
        assert torch.equal(a.lerf_output, b.lerf_output)


# --- ROAD --------------------------------------------------------------------------------


def sensor_case() -> tuple[Linear, torch.Tensor, torch.Tensor]:
    """A model that sees 8 of 144 cells (weights > 0), each carrying an isolated element."""
    gen = seeded(4)
    cells = torch.randperm(144, generator=gen)[:8]
    w = torch.zeros(144)
    w[cells] = 0.5 + torch.rand(8, generator=gen)
    x = torch.zeros(2, 1, 144)
    x[:, 0, cells] = 1 + torch.rand(2, 8, generator=gen)
    return Linear(w.view(12, 12)), x.view(2, 1, 12, 12), (w * x[:, 0]).view(2, 12, 12)


def test_road_known_answer_for_a_sparse_linear_model() -> None:
    # MoRF's first 10% (15 cells) already holds all 8 elements: imputed from the flat wall
    # around them they vanish, r = -1 (plus noise). LeRF never reaches a weighted cell: r = 0.
    model, x, perfect = sensor_case()
    good = road(model, x, perfect, generator=seeded())
    assert good.morf.shape == (2, 9)
    torch.testing.assert_close(good.morf, torch.full((2, 9), -1.0).double(), atol=0.02, rtol=0)
    assert torch.equal(good.lerf, torch.zeros(2, 9).double())
    assert (good.morf_mean.abs() > good.lerf_mean.abs()).all()
    torch.testing.assert_close(good.combined, (good.lerf_mean - good.morf_mean) / 2)
    bad = road(model, x, -perfect, generator=seeded())
    torch.testing.assert_close(bad.combined, -good.combined, atol=0.02, rtol=0)


def test_road_perfect_map_beats_reversed_on_a_dense_linear_model() -> None:
    # heights fluctuating about the mean plane: imputation pulls any removed cell towards 0
    gen = seeded(5)
    w = 0.5 + torch.rand(10, 10, generator=gen)
    x = torch.randn(3, 1, 10, 10, generator=gen)
    model, perfect = Linear(w), w * x[:, 0]
    good = road(model, x, perfect, generator=seeded())
    bad = road(model, x, -perfect, generator=seeded())
    assert (good.morf[:, :3] < 0).all()  # the strongest positive contributions go first
    assert (good.combined > 0).all()
    assert (good.combined > bad.combined).all()


def test_road_scale() -> None:
    model, x, perfect = sensor_case()
    rel = road(model, x, perfect, noise_std=0.0, percentages=(0.2, 0.5))
    torch.testing.assert_close(rel.scale, rel.f_x.abs())
    fixed = road(model, x, perfect, noise_std=0.0, percentages=(0.2, 0.5), scale=2.0)
    torch.testing.assert_close(fixed.morf, (fixed.morf_output - fixed.f_x[:, None]) / 2)
    torch.testing.assert_close(fixed.morf * 2, rel.morf * rel.f_x.abs()[:, None])
    zero = road(model, x, perfect, noise_std=0.0, percentages=(0.5,), scale=0.0)
    assert torch.isnan(zero.morf).all()


def test_road_chunks_do_not_change_the_result(counting_model: type) -> None:
    model = counting_model(conv_model())
    x = torch.randn(3, 1, 8, 8, generator=seeded())
    maps = torch.randn(3, 8, 8, generator=seeded(1))
    a = road(model, x, maps, chunk=4, generator=seeded())
    assert max(model.sizes) <= 4
    assert sum(model.sizes) == 3 + 3 * 2 * 9
    b = road(model, x, maps, chunk=1000, generator=seeded())
    torch.testing.assert_close(a.morf_output, b.morf_output, atol=1e-5, rtol=0)


# --- side effects and validation ---------------------------------------------------------


def test_modes_restored_and_grads_untouched() -> None:
    model = conv_model(batchnorm=True).train()
    model[2].eval()  # a mixed state must come back as it was
    modes = [m.training for m in model.modules()]
    x = torch.randn(2, 1, 8, 8, requires_grad=True)
    maps = torch.randn(2, 8, 8)
    deletion_insertion(model, x, maps, blurred(x.detach()), steps=4)
    random_reference(model, x, smooth_wall(x), steps=4, permutations=2)
    deletion_insertion_loop(model, x, maps, smooth_wall(x), 2)
    road(model, x, maps, percentages=(0.5,))
    assert [m.training for m in model.modules()] == modes
    assert all(p.grad is None for p in model.parameters())
    assert x.grad is None


def test_modes_restored_on_error() -> None:
    model = nn.Sequential(nn.Dropout(0.1), nn.Flatten(), nn.Linear(16, 2)).train()
    x = torch.randn(2, 1, 4, 4)
    with pytest.raises(InputError, match="one value per input"):
        deletion_insertion(model, x, x[:, 0], smooth_wall(x), steps=2)
    assert all(m.training for m in model.modules())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"maps": torch.zeros(2, 4, 5)}, "maps must be"),
        ({"maps": torch.full((2, 4, 4), float("nan"))}, "NaN"),
        ({"baseline": torch.zeros(3, 1, 4, 4)}, "baseline"),
        ({"x": torch.zeros(2, 4, 4)}, "x must be"),
        ({"steps": 0}, "steps"),
        ({"chunk": 0}, "chunk"),
    ],
)
def test_bad_inputs_are_rejected(kwargs: dict, match: str) -> None:
    args = {"x": torch.zeros(2, 1, 4, 4), "maps": torch.zeros(2, 4, 4), "baseline": 0.0}
    args.update(kwargs)
    with pytest.raises(InputError, match=match):
        deletion_insertion(Linear(torch.ones(4, 4)), **args)


def test_road_imputation_is_the_same_with_any_number_of_threads() -> None:
    """The blocks of the imputation solve run side by side; the fields they give do not change."""
    g = torch.Generator().manual_seed(0)
    fields = torch.randn(150, 12, 12, generator=g)  # three blocks of up to 64 fields
    removed = torch.rand(150, 12, 12, generator=g) < 0.6
    one, two = (
        noisy_linear_imputation(fields, removed, generator=torch.Generator().manual_seed(1),
                                workers=w)
        for w in (1, 2)
    )  # fmt: skip
    assert torch.equal(one, two)


def test_per_sample_streams_make_each_sample_independent_of_its_batch() -> None:
    # one generator per sample: a sample's tie-breaking, random orders and ROAD noise are the
    # same alone or in a batch, whatever the chunking (a model whose output per input does
    # not depend on the batch it is in: a convolution's may, in the last bit)
    gen = seeded(6)
    x = torch.randn(3, 1, 8, 8, generator=gen)
    maps = torch.randn(3, 8, 8, generator=gen).round()  # many ties
    model = Linear(torch.rand(8, 8, generator=gen))
    whole, alone = design_streams(1, [0, 1, 2]), design_streams(1, [2])
    a = road(model, x, maps, generator=whole, chunk=7)
    b = road(model, x[2:], maps[2:], generator=alone, chunk=4)
    assert torch.equal(a.morf[2:], b.morf)
    assert torch.equal(a.lerf[2:], b.lerf)
    whole, alone = design_streams(1, [0, 1, 2]), design_streams(1, [2])
    a = random_reference(model, x, smooth_wall(x), steps=6, permutations=3, generator=whole)
    b = random_reference(model, x[2:], smooth_wall(x[2:]), steps=6, permutations=3, generator=alone)
    assert torch.equal(a.deletion_auc[:, 2:], b.deletion_auc)
    whole, alone = design_streams(1, [0, 1, 2]), design_streams(1, [2])
    assert torch.equal(cell_order(maps, whole)[2:], cell_order(maps[2:], alone))
    assert not torch.equal(cell_order(maps, design_streams(2, [0, 1, 2])), cell_order(maps, whole))
