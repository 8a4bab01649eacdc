"""Forward passes over many perturbed inputs, regrouped into batches of a fixed size."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

import torch
from torch import nn

from data.errors import InputError


def model_device(model: nn.Module, fallback: torch.device | str = "cpu") -> torch.device:
    """Where ``model``'s parameters (or buffers) live; ``fallback`` for a model with neither."""
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return torch.device(fallback) if tensor is None else tensor.device


def rechunk(pieces: Iterable[torch.Tensor], chunk: int) -> Iterator[torch.Tensor]:
    """Regroup the rows of ``pieces`` into batches of exactly ``chunk`` (the last may be less)."""
    pending: list[torch.Tensor] = []
    count = 0
    for piece in pieces:
        while piece.shape[0]:
            take, piece = piece[: chunk - count], piece[chunk - count :]
            pending.append(take)
            count += take.shape[0]
            if count == chunk:
                yield pending[0] if len(pending) == 1 else torch.cat(pending)
                pending, count = [], 0
    if pending:
        yield pending[0] if len(pending) == 1 else torch.cat(pending)


def one_per_input(y: torch.Tensor, n: int) -> torch.Tensor:
    """The model output ``y`` as ``(n,)``; a one-line error if it is not one value per input."""
    if y.numel() != n:
        raise InputError(
            f"model output has shape {tuple(y.shape)}; expected one value per input ({n},)"
        )
    return y.reshape(n)


def forward_rows(model: nn.Module, pieces: Iterable[torch.Tensor], chunk: int) -> torch.Tensor:
    """``model`` of every row of ``pieces``, concatenated ``(rows,)``, ``chunk`` rows per pass.

    The caller chooses the gradient and train/eval mode (normally ``torch.no_grad()`` and
    :func:`explain.gradient.eval_mode`).
    """
    outputs = [
        one_per_input(model(batch), batch.shape[0]).detach() for batch in rechunk(pieces, chunk)
    ]
    return torch.cat(outputs)
