"""The explanation engine: any ``nn.Module`` mapping roughness to a scalar -> signed maps.

No Lightning, no checkpoints, no argument parsing: a model that never saw our trainer can be
explained. Scoring the maps lives in :mod:`explain.evaluation`.

    from explain import explain
    maps = explain(model, roughness, methods=["cam", "hirescam", "layercam"])
"""

from explain.api import DEFAULT_METHODS, Explainer, explain
from explain.catalogue import METHODS

__all__ = ["DEFAULT_METHODS", "METHODS", "Explainer", "explain"]
