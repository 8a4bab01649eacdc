"""Every explanation method by name: where its map lives, its units, and whether to trust it.

``resolution`` says which grid a method's native map has:

- ``"layer"``: the explained layer's grid (CAM family, Score-CAM);
- ``"pyramid"``: the finest of several layers' grids (Poly-CAM);
- ``"input"``: the roughness grid itself (gradients, guided methods).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from data.errors import InputError

Resolution = Literal["layer", "pyramid", "input"]


@dataclass(frozen=True)
class Method:
    """What the tool knows about one method.

    Attributes:
        name: The name on the command line and in output files.
        resolution: The grid of its native map (see the module docstring).
        units: Units of the unnormalised map.
        rectified: The method itself applies a ReLU, so its maps are never negative.
        recommended: False for methods kept only to show that the sanity checks catch them.
        perturbation: Needs one forward pass per channel mask rather than one backward pass.
    """

    name: str
    resolution: Resolution
    units: str
    rectified: bool = False
    recommended: bool = True
    perturbation: bool = False


_PER_LAYER_CELL = "U_e/delta per layer cell"
_ARBITRARY = "arbitrary units"

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("cam", "layer", _PER_LAYER_CELL),
        Method("gradcam", "layer", _PER_LAYER_CELL),
        Method("hirescam", "layer", _PER_LAYER_CELL),
        Method("layercam", "layer", _PER_LAYER_CELL, rectified=True),
        Method("gradcam++", "layer", _ARBITRARY),
        Method("gradient", "input", "U_e/delta per delta of height"),
        Method("scorecam", "layer", _ARBITRARY, rectified=True, perturbation=True),
        Method("polycam+", "pyramid", _ARBITRARY, rectified=True, perturbation=True),
        Method("polycam-", "pyramid", _ARBITRARY, rectified=True, perturbation=True),
        Method("polycam+-", "pyramid", _ARBITRARY, rectified=True, perturbation=True),
        Method("guided-backprop", "input", "U_e/delta per delta of height", recommended=False),
        Method("guided-gradcam", "input", _ARBITRARY, recommended=False),
    )
}
# Shorthand accepted on the command line for all three Poly-CAM variants.
ALIASES: dict[str, tuple[str, ...]] = {"polycam": ("polycam+", "polycam-", "polycam+-")}


def resolve_methods(names: list[str] | tuple[str, ...]) -> list[str]:
    """Expand aliases, drop repeats (keeping order) and reject unknown names in one line."""
    out: list[str] = []
    for name in names:
        for method in ALIASES.get(name, (name,)):
            if method not in METHODS:
                known = ", ".join([*METHODS, *ALIASES])
                raise InputError(f"unknown method {method!r}; choose from: {known}")
            if method not in out:
                out.append(method)
    if not out:
        raise InputError("no method given")
    return out
