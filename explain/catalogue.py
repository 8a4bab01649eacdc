"""Every explanation method by name: how it is computed, where its map lives, its units.

One row per method. ``family`` names the pass that computes it (methods of one family share
that pass, e.g. every gradient method comes from one forward and one backward pass);
:mod:`explain.api` dispatches on it. ``resolution`` says which grid a method's native map has:

- ``"layer"``: the explained layer's grid (CAM family, Score-CAM);
- ``"pyramid"``: the finest of several layers' grids (Poly-CAM);
- ``"input"``: the roughness grid itself (gradients, guided methods).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from data.errors import InputError

Resolution = Literal["layer", "pyramid", "input"]
# gradient: one hooked forward + one autograd.grad (explain.gradient); path: one forward and
# backward per point of the path from the baseline (explain.path); scorecam, polycam: masked
# forward passes (explain.perturbation); guided: explain.guided
# reference: maps from the roughness alone, the null references (explain.references)
Family = Literal["gradient", "path", "scorecam", "polycam", "guided", "reference"]
ONE_PASS_FAMILIES = ("gradient", "guided", "reference")  # one forward and one backward per design
REFERENCE_FAMILIES = ("path", "scorecam", "polycam")  # measured against a baseline field
# The dimension of output files that runs over methods; not ``method``, a keyword of
# ``xarray.Dataset.sel``, so that ``ds.sel(attribution_method="cam")`` selects
METHOD_DIM = "attribution_method"


@dataclass(frozen=True)
class Method:
    """What the tool knows about one method.

    Attributes:
        name: The name on the command line and in output files.
        family: The pass that computes it (see the module docstring).
        resolution: The grid of its native map (see the module docstring).
        units: Units of the unnormalised map.
        reference: What a value of 0 means, as a short phrase for figure titles; ``{baseline}``
            stands for the reference field in use (``--baseline``, smooth wall by default).
        rectified: The method itself applies a ReLU, so its maps are never negative.
        recommended: False for methods kept only to show that the sanity checks catch them,
            and for the null references.
        input_multiplied: The map is ``(x - b)`` times a model-dependent factor (gradient x
            input, integrated gradients); the randomisation checks compare that factor, since
            the input factor survives any change of the model.
        complete: The map adds up to the output it explains, for any model: integrated
            gradients to ``f(x) - f(b)`` (up to quadrature, reported as ``ig_residual``), CAM
            to the prediction less the head's bias. Its cells read as a budget in U_e/delta.
    """

    name: str
    family: Family
    resolution: Resolution
    units: str
    reference: str = "0 = no attribution"
    rectified: bool = False
    recommended: bool = True
    input_multiplied: bool = False
    complete: bool = False

    @property
    def one_pass(self) -> bool:
        """Costs one forward and one backward pass per design (the cheapest methods)."""
        return self.family in ONE_PASS_FAMILIES

    @property
    def needs_baseline(self) -> bool:
        """Measured against a reference field (``--baseline``): path and perturbation methods."""
        return self.family in REFERENCE_FAMILIES

    @property
    def non_negative(self) -> bool:
        """Its maps are never negative: it rectifies, or it is a null reference (``|h|``, ...)."""
        return self.rectified or self.family == "reference"


_PER_LAYER_CELL = "U_e/delta per layer cell"
_ARBITRARY = "arbitrary units"
_PER_HEIGHT = "U_e/delta per delta of height"
_PER_CELL = "U_e/delta per cell"

# What 0 means. The layer methods measure against a zero activation of the explained layer (with
# a pooled linear head the CAM maps sum to prediction - bias); the others against their baseline.
_ZERO_LAYER = "0 = no contribution vs. zero layer activation (the head's bias)"
_NO_POSITIVE = "0 = no positive contribution vs. zero layer activation"
_MASKED = "0 = masking changes nothing vs. {baseline}"
_BASELINE = "0 = no change from {baseline}"
_FIRST_ORDER = "0 = no change from a smooth wall (to first order)"
_INSENSITIVE = "0 = output insensitive to this cell's height"
_GUIDED = "0 = no guided signal (not an attribution)"
_NULL = "null reference, not an attribution"

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("cam", "gradient", "layer", _PER_LAYER_CELL, _ZERO_LAYER, complete=True),
        Method("gradcam", "gradient", "layer", _PER_LAYER_CELL, _ZERO_LAYER),
        Method("hirescam", "gradient", "layer", _PER_LAYER_CELL, _ZERO_LAYER),
        Method("layercam", "gradient", "layer", _PER_LAYER_CELL, _NO_POSITIVE, rectified=True),
        Method("gradcam++", "gradient", "layer", _ARBITRARY, _NO_POSITIVE),
        Method("gradient", "gradient", "input", _PER_HEIGHT, _INSENSITIVE),
        Method(
            "gradient-x-input", "gradient", "input", _PER_CELL, _FIRST_ORDER, input_multiplied=True
        ),
        Method(
            "integrated-gradients",
            "path",
            "input",
            _PER_CELL,
            _BASELINE,
            input_multiplied=True,
            complete=True,
        ),
        Method("scorecam", "scorecam", "layer", _ARBITRARY, _MASKED, rectified=True),
        Method("polycam+", "polycam", "pyramid", _ARBITRARY, _MASKED, rectified=True),
        Method("polycam-", "polycam", "pyramid", _ARBITRARY, _MASKED, rectified=True),
        Method("polycam+-", "polycam", "pyramid", _ARBITRARY, _MASKED, rectified=True),
        Method("guided-backprop", "guided", "input", _PER_HEIGHT, _GUIDED, recommended=False),
        Method("guided-gradcam", "guided", "input", _ARBITRARY, _GUIDED, recommended=False),
        Method("random-map", "reference", "input", _ARBITRARY, _NULL, recommended=False),
        Method("abs-height", "reference", "input", "delta", _NULL, recommended=False),
        Method("height-edges", "reference", "input", "delta per cell", _NULL, recommended=False),
    )
}
# Shorthand accepted on the command line for all three Poly-CAM variants.
ALIASES: dict[str, tuple[str, ...]] = {
    "polycam": tuple(m.name for m in METHODS.values() if m.family == "polycam")
}


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
