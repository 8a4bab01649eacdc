"""Dataset and LightningDataModule over a campaign file.

The split is by sample with a fixed seed and is saved with the run (``split_indices``,
also part of every checkpoint through :meth:`CampaignDataModule.state_dict`). Campaigns
that fit under ``in_memory_limit_mb`` are loaded once as float32 tensors; larger ones are
read lazily with h5py, the file opened per worker on first access (never in ``__init__``,
so nothing unpicklable travels to the workers). A lazy batch is read in one pass over its
sorted positions (:func:`read_rows`), so the sampler, and with it the shuffle, is the same
on both paths; memory holds one batch, not the campaign.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from data.campaign import check_split_campaign, file_fingerprint, open_campaign, open_or_simulate
from data.errors import CampaignError, InputError

_READ_ROWS = 1024  # samples per read while loading or scanning (16 MiB at 64x64 float32)


def read_rows(dset: h5py.Dataset, positions: np.ndarray) -> np.ndarray:
    """``dset[positions]`` for any order of positions, read as contiguous runs of the sorted
    positions: one slice read per run, at most ``_READ_ROWS`` samples each.

    h5py's own fancy indexing builds a selection per index and is slower than this; a slice
    reads a run of neighbouring samples (a validation batch, a block of the split) at once.

    Returns:
        Float32 array ``(len(positions), *dset.shape[1:])`` in the order of ``positions``.
    """
    positions = np.asarray(positions, dtype=np.int64)
    order = np.argsort(positions, kind="stable")
    ordered = positions[order]
    out = np.empty((len(positions), *dset.shape[1:]), dtype=np.float32)
    if not len(positions):
        return out
    # a run ends where the next position is not the next sample, or after _READ_ROWS samples
    starts = np.flatnonzero(np.diff(ordered, prepend=-2) != 1)
    ends = np.append(starts[1:], len(ordered))
    for run_start, run_end in zip(starts, ends, strict=True):
        for lo in range(int(run_start), int(run_end), _READ_ROWS):
            hi = min(lo + _READ_ROWS, int(run_end))
            first = int(ordered[lo])
            out[order[lo:hi]] = dset[first : first + hi - lo]
    return out


def _cache_bytes(dset: h5py.Dataset) -> int | None:
    """Chunk cache for lazy reads: none for unfiltered chunks, so a per-sample read reads
    only that sample (with a cache, a 1 MiB chunk of 64 samples at 64x64 is read whole for
    each); HDF5's default where chunks must be decompressed whole anyway."""
    if dset.chunks is None or dset.id.get_create_plist().get_nfilters() == 0:
        return 0
    return None


class CampaignDataset(Dataset):
    """``(roughness (1, y, x), max_vorticity ())`` pairs for the given sample indices.

    A DataLoader batch goes through :meth:`__getitems__`: on the lazy path one sorted read
    of the batch's designs, on either path the same items in the same order.

    Args:
        path: Campaign file.
        indices: Positions along the ``sample`` dimension, in the order served.
        in_memory: Load all requested samples at construction instead of reading lazily.
        targets: Optional replacement targets aligned with ``indices`` (data randomisation).
    """

    def __init__(
        self,
        path: str | Path,
        indices: np.ndarray,
        in_memory: bool,
        targets: np.ndarray | None = None,
    ) -> None:
        self.path = str(path)
        self.indices = np.asarray(indices, dtype=np.int64)
        self._file: h5py.File | None = None
        self.roughness: torch.Tensor | None = None
        with h5py.File(self.path, "r") as f:
            y = np.asarray(f["max_vorticity"][...], dtype=np.float32)[self.indices]
            self._cache = _cache_bytes(f["roughness"])
            if in_memory:
                # block by block: no transient copy of the whole campaign beside the split
                rows = read_rows(f["roughness"], self.indices)
                self.roughness = torch.from_numpy(rows)[:, None]
        self.targets = torch.from_numpy(y if targets is None else np.asarray(targets, np.float32))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.__getitems__([i])[0]

    def __getitems__(self, items: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The items at dataset positions ``items``, in that order (what the DataLoader's
        default fetcher calls with the positions of one batch)."""
        fields = self.rows(np.asarray(items, dtype=np.int64))
        return [(fields[k][None], self.targets[i]) for k, i in enumerate(items)]

    def rows(self, items: np.ndarray) -> torch.Tensor:
        """Roughness ``(len(items), y, x)`` float32 in delta at dataset positions ``items``."""
        if self.roughness is not None:
            return self.roughness[torch.as_tensor(items), 0]
        if self._file is None:
            self._file = h5py.File(self.path, "r", rdcc_nbytes=self._cache)
        return torch.from_numpy(read_rows(self._file["roughness"], self.indices[items]))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None  # each worker opens its own handle
        return state


class ShardSampler(DistributedSampler):
    """Evaluation shard of one process: rank ``r`` of ``W`` takes positions ``r::W``, each
    design exactly once over all ranks, no padding (shards differ by at most one design).

    torch's :class:`DistributedSampler` pads the last shard by repeating designs, so that a
    validation or test metric would count some designs twice; torchmetrics syncs uneven
    shards by summing their states, which evaluation needs, and no gradient is synced there.
    A subclass of :class:`DistributedSampler`, so Lightning serves it as it is.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.num_samples = len(range(rank, len(dataset), num_replicas))
        self.total_size = len(dataset)

    def __iter__(self) -> Any:
        return iter(range(self.rank, self.total_size, self.num_replicas))

    def __len__(self) -> int:
        return self.num_samples


FINGERPRINT_KEY = "campaign_fingerprint"  # beside the split_* keys of the state


def split_indices(
    n: int, fractions: tuple[float, float, float], seed: int
) -> dict[str, np.ndarray]:
    """Disjoint train/val/test index arrays from a seeded permutation of ``range(n)``."""
    if not np.isclose(sum(fractions), 1.0) or min(fractions) < 0:
        raise InputError(
            f"--data.fractions {list(fractions)}: expected three train/val/test fractions >= 0 "
            "that sum to 1"
        )
    order = np.random.default_rng(seed).permutation(n)
    n_val, n_test = round(fractions[1] * n), round(fractions[2] * n)
    n_train = n - n_val - n_test
    return {
        "train": np.sort(order[:n_train]),
        "val": np.sort(order[n_train : n_train + n_val]),
        "test": np.sort(order[n_train + n_val :]),
    }


def _check_settings(**settings: Any) -> None:
    """One-line errors naming the ``data.*`` option, before anything is read or simulated."""
    lowest = {"batch_size": 1, "num_workers": 0, "size": 4, "simulate_samples": 1}
    lowest |= {"train_samples": 1, "in_memory_limit_mb": 0}
    for name, low in lowest.items():
        value = settings[name]
        if value is not None and not value >= low:
            raise InputError(f"--data.{name} {value}: expected at least {low}")
    fractions = tuple(settings["fractions"])
    if len(fractions) != 3 or min(fractions) < 0 or not np.isclose(sum(fractions), 1.0):
        raise InputError(
            f"--data.fractions {list(fractions)}: expected three train/val/test fractions >= 0 "
            "that sum to 1"
        )
    if fractions[0] <= 0 or fractions[1] <= 0:
        raise InputError(
            f"--data.fractions {list(fractions)}: the train and validation fractions must be > 0"
        )


# designs each split needs: two to train on (a spread to normalise by), one to validate, one
# to test (only where testing)
MIN_SPLIT = {"train": 2, "val": 1, "test": 1}


def check_split_sizes(
    splits: dict[str, np.ndarray], path: object, fractions: Any, stage: str | None
) -> None:
    """Refuse a split too small for ``stage`` (``fit``, ``validate``, ``test``; ``predict``
    uses none), naming the campaign and the fractions."""
    needed = {"fit": ("train", "val"), None: ("train", "val"), "validate": ("val",)}
    needed["test"] = ("test",)
    short = [k for k in needed.get(stage, ()) if len(splits[k]) < MIN_SPLIT[k]]
    if short:
        n = sum(len(v) for v in splits.values())
        sizes = ", ".join(f"{k} {len(v)}" for k, v in splits.items())
        raise InputError(
            f"{path}: {n} designs split as {sizes} (--data.fractions {list(fractions)}); the "
            f"{' and '.join(short)} split needs at least "
            f"{' and '.join(str(MIN_SPLIT[k]) for k in short)}; use a larger campaign or raise "
            "its fraction"
        )


class CampaignDataModule(L.LightningDataModule):
    """Serves a campaign file, simulating it first when it is absent and ``simulate`` is set.

    Args:
        path: Campaign file (netCDF4/HDF5, see ``docs/campaign-format.md``).
        simulate_samples: When ``path`` does not exist, simulate this many samples into it
            (cached for later runs). ``None``: the file must exist.
        size: Patch size in cells for a simulated campaign.
        campaign_seed: Seed of a simulated campaign.
        fractions: Train/val/test fractions of the samples.
        split_seed: Seed of the split permutation.
        train_samples: Use only the first ``train_samples`` of the training split
            (learning curves); ``None`` uses all.
        batch_size: Samples per batch.
        num_workers: DataLoader workers.
        in_memory_limit_mb: Load the campaign into memory when its roughness array is
            at most this size, else read lazily per worker.
        permute_targets: Shuffle the training targets among training samples (the data
            randomisation sanity check); validation and test keep their true targets.
    """

    def __init__(
        self,
        path: str = "campaigns/default.nc",
        simulate_samples: int | None = None,
        size: int = 64,
        campaign_seed: int = 0,
        fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
        split_seed: int = 0,
        train_samples: int | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        in_memory_limit_mb: float = 2048.0,
        permute_targets: bool = False,
    ) -> None:
        super().__init__()
        _check_settings(
            batch_size=batch_size, num_workers=num_workers, size=size,
            simulate_samples=simulate_samples, train_samples=train_samples,
            in_memory_limit_mb=in_memory_limit_mb, fractions=fractions,
        )  # fmt: skip
        self.save_hyperparameters()
        self.splits: dict[str, np.ndarray] | None = None
        self.datasets: dict[str, CampaignDataset] = {}

    @property
    def grid_shape(self) -> tuple[int, int]:
        """``(y, x)`` of the roughness grid (the simulated size before the file exists)."""
        if Path(self.hparams.path).exists():
            with h5py.File(self.hparams.path, "r") as f:
                return tuple(int(s) for s in f["roughness"].shape[1:])
        return (self.hparams.size, self.hparams.size)

    def prepare_data(self) -> None:
        """Simulate the campaign once if it is absent and a simulation is configured."""
        path = Path(self.hparams.path)
        if not path.exists():
            if self.hparams.simulate_samples is None:
                raise CampaignError(
                    f"{path}: campaign file not found (give an existing file, or set "
                    "data.simulate_samples to generate one)"
                )
            open_or_simulate(
                path, self.hparams.simulate_samples, self.hparams.size, self.hparams.campaign_seed
            )

    def setup(self, stage: str | None = None) -> None:
        if self.datasets and (stage != "predict" or "predict" in self.datasets):
            return
        ds = open_campaign(self.hparams.path)
        n = ds.sizes["sample"]
        nbytes = ds["roughness"].size * 4
        ds.close()
        if self.splits is None:
            self.splits = split_indices(n, tuple(self.hparams.fractions), self.hparams.split_seed)
            if self.hparams.train_samples is not None:
                self.splits["train"] = self._subset(self.splits["train"])
        check_split_sizes(self.splits, self.hparams.path, self.hparams.fractions, stage)
        in_memory = nbytes <= self.hparams.in_memory_limit_mb * 2**20
        for name, idx in self.splits.items():
            targets = self._permuted_targets(idx) if name == "train" else None
            self.datasets[name] = CampaignDataset(self.hparams.path, idx, in_memory, targets)
        if stage == "predict":
            self.datasets["predict"] = CampaignDataset(self.hparams.path, np.arange(n), in_memory)

    def _subset(self, train: np.ndarray) -> np.ndarray:
        k = self.hparams.train_samples
        if not 0 < k <= len(train):
            raise InputError(
                f"data.train_samples: expected 1..{len(train)} (the training split of "
                f"{self.hparams.path}), got {k}"
            )
        return train[:k]

    def _permuted_targets(self, idx: np.ndarray) -> np.ndarray | None:
        if not self.hparams.permute_targets:
            return None
        with h5py.File(self.hparams.path, "r") as f:
            y = f["max_vorticity"][np.sort(idx)]
        return np.random.default_rng(self.hparams.split_seed + 1).permutation(y)

    def training_statistics(self) -> dict[str, float]:
        """Mean and std of roughness (all cells) and of the target over the training split.

        Roughness is streamed in blocks of ``_READ_ROWS`` designs on either path and the block
        moments are merged in float64 (Chan et al.'s pairwise update), so a campaign larger
        than memory is never held whole and both paths give the same numbers.
        """
        if not self.datasets:
            self.setup("fit")
        train = self.datasets["train"]
        count, mean, m2 = 0, 0.0, 0.0
        for start in range(0, len(train), _READ_ROWS):
            items = np.arange(start, min(start + _READ_ROWS, len(train)))
            block = train.rows(items).numpy().astype(np.float64)
            n, block_mean = block.size, float(block.mean())
            block_m2 = float(np.square(block - block_mean).sum())
            delta, total = block_mean - mean, count + n
            mean += delta * n / total
            m2 += block_m2 + delta**2 * count * n / total
            count = total
        std = (m2 / count) ** 0.5
        y = train.targets.double()
        return {
            "roughness_mean": mean,
            "roughness_std": std or 1.0,
            "target_mean": float(y.mean()),
            "target_std": float(y.std()) or 1.0,
        }

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        """Training: Lightning swaps in its shuffling :class:`DistributedSampler` under DDP
        (equal shards, a few designs repeated: harmless for gradients). Evaluation under DDP:
        a :class:`ShardSampler`, so every design is counted exactly once."""
        dataset = self.datasets[split]
        sampler = None
        if split != "train" and torch.distributed.is_available():
            if torch.distributed.is_initialized():
                world, rank = torch.distributed.get_world_size(), torch.distributed.get_rank()
                sampler = ShardSampler(dataset, world, rank) if world > 1 else None
        return DataLoader(
            dataset,
            batch_size=self.hparams.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """Every sample of the campaign, in file order."""
        return self._loader("predict", shuffle=False)

    def state_dict(self) -> dict[str, Any]:
        """The split, so a checkpoint records exactly which samples were held out, and the
        campaign it indexes (:func:`data.campaign.fingerprint`)."""
        if self.splits is None:
            return {}
        state: dict[str, Any] = {f"split_{k}": v.tolist() for k, v in self.splits.items()}
        state[FINGERPRINT_KEY] = file_fingerprint(self.hparams.path)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Adopt a checkpoint's split; datasets built from the config's split are rebuilt.

        Raises:
            InputError: The split was drawn from another campaign: its indices would pick
                other designs here (checkpoints from before the fingerprint are trusted).
        """
        state = dict(state)
        expected = state.pop(FINGERPRINT_KEY, None)
        trainer = getattr(self, "trainer", None)
        if not state or (trainer is not None and trainer.state.fn == "predict"):
            return  # predict reads every design of its campaign, whichever it is: no split
        check_split_campaign(expected, self.hparams.path, "the checkpoint")
        self.splits = {k.removeprefix("split_"): np.asarray(v) for k, v in state.items()}
        if self.datasets:
            stage = "predict" if "predict" in self.datasets else None
            self.datasets = {}
            self.setup(stage)
