"""A tiny in-memory data module (16x16 fields) for Lightning fits in the surrogate tests."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

SIZE = 16
STATS = {"roughness_mean": 0.25, "roughness_std": 2.0, "target_mean": 3.0, "target_std": 0.5}


class TinyData(L.LightningDataModule):
    """Seeded random roughness ``(n, 1, 16, 16)`` with a smooth target; fixed statistics.

    The statistics are deliberately not those of the data, so a test can tell where the
    normaliser's values came from.
    """

    def __init__(self, stats: dict[str, float], samples: int = 8, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(samples, 1, SIZE, SIZE, generator=generator)
        y = 3.0 + (x**2).mean(dim=(1, 2, 3))
        self.dataset = TensorDataset(x, y)
        self.stats = dict(stats)
        self.statistics_calls = 0

    def training_statistics(self) -> dict[str, float]:
        self.statistics_calls += 1
        return dict(self.stats)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=4, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=4)


@pytest.fixture(scope="session")
def make_data() -> Callable[..., TinyData]:
    return TinyData


@pytest.fixture(scope="session")
def stats() -> dict[str, float]:
    return dict(STATS)
