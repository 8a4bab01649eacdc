"""The networks a surrogate can use, by name, and their hyper-parameters.

Each network's hyper-parameters are declared once, as its class's own arguments.
:class:`~surrogate.module.SurrogateModule` passes them through (``**network``; LightningCLI
offers them as ``--model.<name>`` by reading that call) and a checkpoint records them under
the same names, with the network's name under ``architecture`` (absent in checkpoints written
before there was a choice, which means ``"cnn"``).
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from data.errors import InputError
from surrogate.network import RoughnessCNN
from surrogate.transport import TransportNet

# model.architecture -> network class
ARCHITECTURES: dict[str, type[nn.Module]] = {"cnn": RoughnessCNN, "transport": TransportNet}


def network_arguments(architecture: str) -> dict[str, Any]:
    """``{argument: default}`` of ``architecture``'s network class."""
    if architecture not in ARCHITECTURES:
        raise InputError(f"model.architecture {architecture!r}: choose from {list(ARCHITECTURES)}")
    parameters = inspect.signature(ARCHITECTURES[architecture]).parameters
    return {name: p.default for name, p in parameters.items()}


def network_hparams(architecture: str = "cnn", **given: Any) -> dict[str, Any]:
    """Every hyper-parameter of ``architecture``'s network: ``given`` ones, the others default."""
    defaults = network_arguments(architecture)
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise InputError(
            f"model: {unknown} are not arguments of the {architecture!r} network; "
            f"its arguments: {list(defaults)}"
        )
    return defaults | given


def build_network(architecture: str = "cnn", **hparams: Any) -> nn.Module:
    """The network of ``architecture`` from (a subset of) its hyper-parameters."""
    return ARCHITECTURES[architecture](**network_hparams(architecture, **hparams))
