"""Standardisation whose statistics travel with the model as buffers."""

from __future__ import annotations

import torch
from torch import nn


class Normaliser(nn.Module):
    """Affine standardisation ``z = (v - mean) / std`` with scalar statistics in buffers.

    The statistics are set once from the training split (:meth:`set_statistics`) and are
    then part of every checkpoint, so a loaded model needs no data to run.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("std", torch.ones(()))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    def set_statistics(self, mean: float, std: float) -> None:
        """Store the training-split statistics; ``std`` must be positive."""
        if not std > 0:
            raise ValueError(f"standard deviation must be positive, got {std}")
        self.mean.fill_(float(mean))
        self.std.fill_(float(std))
        self.fitted.fill_(True)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        """Physical values -> standardised values (same shape)."""
        return (values - self.mean) / self.std

    def inverse(self, standardised: torch.Tensor) -> torch.Tensor:
        """Standardised values -> physical values (same shape)."""
        return standardised * self.std + self.mean


class PhysicalSurrogate(nn.Module):
    """The network with its normalisers: roughness in delta in, vorticity in U_e/delta out.

    Shapes: input ``(batch, 1, y, x)`` heights in delta; output ``(batch,)`` in U_e/delta.
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.input_norm = Normaliser()
        self.network = network
        self.target_norm = Normaliser()

    def forward(self, roughness: torch.Tensor) -> torch.Tensor:
        return self.target_norm.inverse(self.network(self.input_norm(roughness)))
