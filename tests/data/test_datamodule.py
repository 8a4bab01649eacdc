"""Split, in-memory vs lazy reads, statistics and state of the campaign DataModule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from data.campaign import simulate_to_file
from data.datamodule import CampaignDataModule, CampaignDataset, split_indices


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
