"""The catalogue is the single list of methods: every row has an implementation and vice versa,
and adding a method is one row plus one function."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explain import catalogue, gradient
from explain.api import FAMILIES, Explainer, explain, implemented
from explain.catalogue import METHODS, Method

GRID = {"layer": (8, 8), "pyramid": (16, 16), "input": (16, 16)}


def unimplemented() -> list[str]:
    """Catalogue rows whose family has no function or whose function cannot compute them."""
    return [
        m.name
        for m in METHODS.values()
        if m.family not in FAMILIES or m.name not in implemented(m.family)
    ]


def test_every_row_has_an_implementation_and_every_implementation_a_row() -> None:
    assert unimplemented() == []
    for family in FAMILIES:
        assert implemented(family), family
        assert {m for m in implemented(family)} <= set(METHODS), family
    rows = {m.name for m in METHODS.values() if m.family == "gradient"}
    assert {m for m in rows if METHODS[m].resolution == "layer"} == set(gradient.LAYER_FORMULAS)
    assert {m for m in rows if METHODS[m].resolution == "input"} == set(gradient.INPUT_FORMULAS)


def test_a_row_without_an_implementation_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(METHODS, "lime", Method("lime", "sampling", "input", "1"))
    monkeypatch.setitem(METHODS, "xrai", Method("xrai", "gradient", "input", "1"))
    assert unimplemented() == ["lime", "xrai"]


def test_every_method_computes_a_finite_map_on_its_grid(tiny_model: torch.nn.Module) -> None:
    x = 0.05 * torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(1))
    explainer = Explainer(tiny_model, (16, 16), list(METHODS), chunk=64)
    y, maps = explainer.maps(x)
    assert y.shape == (3,)
    assert set(maps) == set(METHODS)
    for name, m in maps.items():
        assert tuple(m.shape) == (3, *GRID[METHODS[name].resolution]), name
        assert torch.isfinite(m).all(), name
        if METHODS[name].rectified:
            assert (m >= 0).all(), name


def test_adding_a_method_is_one_row_plus_one_function(
    monkeypatch: pytest.MonkeyPatch, tiny_model: torch.nn.Module
) -> None:
    """The worked example of docs/explain.md: gradient x input as an input-grid formula."""

    def gradient_times_input(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return (x * grad)[:, 0]

    row = Method("gradient-x-input", "gradient", "input", "U_e/delta per cell")
    monkeypatch.setitem(catalogue.METHODS, row.name, row)
    monkeypatch.setitem(gradient.INPUT_FORMULAS, row.name, gradient_times_input)
    x = 0.05 * torch.randn(2, 16, 16, generator=torch.Generator().manual_seed(2))
    ds = explain(tiny_model, x, methods=["gradient", "gradient-x-input"], interpolation=["none"])
    maps = ds["attribution"].values[:, :, 0]
    np.testing.assert_allclose(maps[:, 1], x.numpy() * maps[:, 0], rtol=1e-6, atol=1e-12)
    assert list(ds["method_units"].values) == [METHODS["gradient"].units, row.units]
