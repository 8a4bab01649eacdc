"""Split, in-memory vs lazy reads, statistics and state of the campaign DataModule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from data.campaign import simulate_to_file
from data.datamodule import CampaignDataModule, CampaignDataset, read_rows, split_indices


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dm") / "c.nc"
    return simulate_to_file(path, samples=40, size=16, seed=2, progress=False)


def module(path: Path, **kwargs) -> CampaignDataModule:
    dm = CampaignDataModule(path=str(path), size=16, batch_size=8, **kwargs)
    dm.setup("fit")
    return dm


def test_split_is_disjoint_complete_and_seeded() -> None:
    a = split_indices(103, (0.8, 0.1, 0.1), seed=4)
    assert [len(a[k]) for k in ("train", "val", "test")] == [83, 10, 10]
    joined = np.concatenate(list(a.values()))
    assert sorted(joined.tolist()) == list(range(103))
    b = split_indices(103, (0.8, 0.1, 0.1), seed=4)
    c = split_indices(103, (0.8, 0.1, 0.1), seed=5)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["test"], c["test"])
    with pytest.raises(ValueError, match="sum to 1"):
        split_indices(10, (0.8, 0.3, 0.1), seed=0)


def test_lazy_and_in_memory_serve_identical_items(campaign: Path) -> None:
    idx = np.array([7, 3, 31, 0])
    eager = CampaignDataset(campaign, idx, in_memory=True)
    lazy = CampaignDataset(campaign, idx, in_memory=False)
    assert eager.roughness is not None
    assert lazy.roughness is None
    for i in range(len(idx)):
        (xe, ye), (xl, yl) = eager[i], lazy[i]
        assert xe.shape == (1, 16, 16)
        assert xe.dtype == torch.float32
        assert torch.equal(xe, xl)
        assert torch.equal(ye, yl)


def test_lazy_reads_work_in_worker_processes(campaign: Path) -> None:
    lazy = CampaignDataset(campaign, np.arange(40), in_memory=False)
    lazy[0]  # an open handle in the parent must not travel to the workers
    eager = CampaignDataset(campaign, np.arange(40), in_memory=True)
    got = torch.cat([x for x, _ in DataLoader(lazy, batch_size=10, num_workers=2)])
    assert torch.equal(got, eager.roughness)


@pytest.mark.parametrize(("limit", "in_memory"), [(0.0, False), (1024.0, True)])
def test_size_threshold_picks_the_reader(campaign: Path, limit: float, in_memory: bool) -> None:
    dm = module(campaign, in_memory_limit_mb=limit)
    assert (dm.datasets["train"].roughness is not None) is in_memory
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 1, 16, 16)
    assert y.shape == (8,)


def test_training_statistics_use_only_the_training_split(campaign: Path) -> None:
    import h5py

    dm = module(campaign, in_memory_limit_mb=0.0)
    train = dm.splits["train"]
    with h5py.File(campaign, "r") as f:
        h = f["roughness"][...][train].astype(np.float64)
        y = f["max_vorticity"][...][train].astype(np.float64)
    stats = dm.training_statistics()
    assert stats["roughness_mean"] == pytest.approx(h.mean(), rel=1e-6)
    assert stats["roughness_std"] == pytest.approx(h.std(), rel=1e-5)
    assert stats["target_mean"] == pytest.approx(y.mean(), rel=1e-6)
    assert stats["target_std"] == pytest.approx(y.std(ddof=1), rel=1e-5)


def test_train_subset_and_permuted_targets(campaign: Path) -> None:
    full = module(campaign)
    sub = module(campaign, train_samples=10)
    assert np.array_equal(sub.splits["train"], full.splits["train"][:10])
    perm = module(campaign, permute_targets=True)
    true, shuffled = full.datasets["train"].targets, perm.datasets["train"].targets
    assert not torch.equal(true, shuffled)
    assert torch.equal(torch.sort(true).values, torch.sort(shuffled).values)
    assert torch.equal(full.datasets["test"].targets, perm.datasets["test"].targets)


def test_state_dict_restores_the_split(campaign: Path) -> None:
    a = module(campaign, split_seed=1)
    b = module(campaign, split_seed=2)
    assert not np.array_equal(a.splits["test"], b.splits["test"])
    b.load_state_dict(a.state_dict())
    assert np.array_equal(b.splits["test"], a.splits["test"])
    assert np.array_equal(b.datasets["test"].indices, a.splits["test"])


def test_a_split_is_only_applied_to_the_campaign_it_was_drawn_from(
    campaign: Path, tmp_path: Path
) -> None:
    from data.errors import InputError

    state = module(campaign).state_dict()
    assert len(state["campaign_fingerprint"]) == 16
    other = simulate_to_file(tmp_path / "other.nc", samples=40, size=16, seed=3, progress=False)
    with pytest.raises(InputError, match=r"other\.nc: not the campaign the checkpoint's split"):
        module(other).load_state_dict(state)
    old = {k: v for k, v in state.items() if k != "campaign_fingerprint"}  # an older checkpoint
    b = module(other)
    b.load_state_dict(old)
    assert np.array_equal(b.splits["test"], state["split_test"])


def test_predict_serves_every_sample_in_file_order(campaign: Path) -> None:
    dm = module(campaign)
    dm.setup("predict")
    assert np.array_equal(dm.datasets["predict"].indices, np.arange(40))
    assert sum(len(x) for x, _ in dm.predict_dataloader()) == 40


def test_read_rows_keeps_the_requested_order(campaign: Path) -> None:
    import h5py

    from data import datamodule

    positions = np.array([5, 3, 4, 39, 0, 1, 2, 20, 3])
    with h5py.File(campaign, "r") as f:
        whole = f["roughness"][...]
        assert np.array_equal(read_rows(f["roughness"], positions), whole[positions])
        assert read_rows(f["roughness"], np.array([], dtype=np.int64)).shape == (0, 16, 16)
        original = datamodule._READ_ROWS
        try:  # runs longer than one read are split into several
            datamodule._READ_ROWS = 3
            assert np.array_equal(read_rows(f["roughness"], np.arange(40)), whole)
        finally:
            datamodule._READ_ROWS = original


def test_lazy_reads_skip_the_chunk_cache_of_uncompressed_files(campaign: Path) -> None:
    lazy = CampaignDataset(campaign, np.arange(40), in_memory=False)
    lazy[0]
    # a 64-sample chunk cached for one 16 KiB design would be read whole for each design
    assert lazy._file is not None
    assert lazy._file.id.get_access_plist().get_cache()[2] == 0


def _batches(dm: CampaignDataModule, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(seed)
    return list(dm.train_dataloader())


def test_lazy_and_in_memory_give_identical_shuffled_batches(campaign: Path) -> None:
    eager, lazy = module(campaign), module(campaign, in_memory_limit_mb=0.0)
    assert eager.datasets["train"].roughness is not None
    assert lazy.datasets["train"].roughness is None
    for seed in (0, 1):
        a, b = _batches(eager, seed), _batches(lazy, seed)
        assert len(a) == len(b) == 4
        for (xa, ya), (xb, yb) in zip(a, b, strict=True):
            assert xa.shape == (8, 1, 16, 16)
            assert torch.equal(xa, xb)
            assert torch.equal(ya, yb)
    assert not torch.equal(_batches(lazy, 0)[0][0], _batches(lazy, 1)[0][0])


@pytest.mark.parametrize("limit", [0.0, 1024.0])
def test_each_training_design_is_served_once_per_epoch(campaign: Path, limit: float) -> None:
    import h5py

    dm = module(campaign, in_memory_limit_mb=limit)
    with h5py.File(campaign, "r") as f:
        y = f["max_vorticity"][...]
    rank = {float(v): i for i, v in enumerate(y)}  # the targets of this campaign are distinct
    assert len(rank) == 40
    epochs = []
    for seed in (0, 1):
        served = [rank[float(v)] for _, target in _batches(dm, seed) for v in target]
        assert sorted(served) == dm.splits["train"].tolist()
        epochs.append(served)
    assert epochs[0] != epochs[1]  # a new permutation each epoch


def test_training_statistics_agree_between_paths_and_with_numpy(
    campaign: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import h5py

    from data import datamodule

    with h5py.File(campaign, "r") as f:
        h = f["roughness"][...].astype(np.float64)
    monkeypatch.setattr(datamodule, "_READ_ROWS", 7)  # several blocks to merge
    eager = module(campaign).training_statistics()
    lazy = module(campaign, in_memory_limit_mb=0.0).training_statistics()
    train = h[module(campaign).splits["train"]]
    assert eager.keys() == lazy.keys()
    for key in eager:
        assert eager[key] == pytest.approx(lazy[key], rel=1e-12)
    assert eager["roughness_mean"] == pytest.approx(train.mean(), rel=1e-12)
    assert eager["roughness_std"] == pytest.approx(train.std(), rel=1e-12)
