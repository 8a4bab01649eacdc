"""Every side effect an explanation has on a model, each guarded once.

An explanation may put the model in eval mode, hook a layer's output or replace it, and must
leave the model as it found it: the hooks removed and each submodule's own train/eval flag
restored on exit, also on error. Gradients are taken with ``torch.autograd.grad`` elsewhere,
so no ``.grad`` field is ever written.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
from torch import nn

from data.errors import InputError

Hook = Callable[[nn.Module, object, object], object]


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name``; a one-line error lists the candidates otherwise."""
    modules = dict(model.named_modules())
    if name not in modules or name == "":
        names = ", ".join(n for n in modules if n) or "(none)"
        raise InputError(f"layer {name!r} not found; layers: {names}")
    return modules[name]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode; restore every submodule's own train/eval flag on exit."""
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        yield model
    finally:
        for module, mode in modes.items():
            module.training = mode


@contextlib.contextmanager
def forward_hooks(model: nn.Module, hooks: Iterable[tuple[nn.Module, Hook]]) -> Iterator[int]:
    """Register each ``(module, hook)`` pair, with ``model`` in eval mode; yields how many.

    The hooks are removed and the modes restored on exit, also on error.
    """
    handles = []
    with eval_mode(model):
        try:
            for module, hook in hooks:
                handles.append(module.register_forward_hook(hook))
            yield len(handles)
        finally:
            for handle in handles:
                handle.remove()


def _spatial_hook(store: dict[str, torch.Tensor], key: str, layer: str) -> Hook:
    def hook(_module: nn.Module, _inputs: object, output: object) -> None:
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output)
            raise InputError(
                f"layer {layer!r} has no spatial output: expected (batch, channels, y, x), "
                f"got {shape}"
            )
        store[key] = output

    return hook


@contextlib.contextmanager
def _hooked(model: nn.Module, targets: dict[str, str]) -> Iterator[dict[str, torch.Tensor]]:
    """Store the output of layer ``targets[key]`` under ``key``, in eval mode."""
    modules = {key: find_layer(model, layer) for key, layer in targets.items()}
    store: dict[str, torch.Tensor] = {}
    pairs = [(modules[key], _spatial_hook(store, key, layer)) for key, layer in targets.items()]
    with forward_hooks(model, pairs):
        yield store


@contextlib.contextmanager
def captured(model: nn.Module, layer: str) -> Iterator[dict[str, torch.Tensor]]:
    """Record ``layer``'s output under ``"activation"`` during a forward pass, in eval mode."""
    with _hooked(model, {"activation": layer}) as store:
        yield store


@contextlib.contextmanager
def captured_layers(model: nn.Module, layers: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Record several layers' outputs, keyed by layer name, during a forward pass, in eval mode.

    All names are resolved before any hook is registered.
    """
    if not layers:
        raise InputError("layers is empty; give at least one module name with a spatial output")
    if len(set(layers)) != len(layers):
        raise InputError(f"layers must be distinct, got {list(layers)}")
    with _hooked(model, {layer: layer for layer in layers}) as store:
        yield store


@contextlib.contextmanager
def zeroed_layer(model: nn.Module, layer: str) -> Iterator[nn.Module]:
    """``model`` with ``layer``'s output replaced by zeros, in eval mode."""
    pairs = [(find_layer(model, layer), lambda _m, _i, out: torch.zeros_like(out))]
    with forward_hooks(model, pairs):
        yield model
