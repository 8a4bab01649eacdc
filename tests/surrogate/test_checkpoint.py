"""Safe checkpoint loading: real Lightning checkpoints load; bad files give one-line InputErrors."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from data.errors import InputError
from surrogate.checkpoint import load_model, model_from_checkpoint, read_checkpoint
from surrogate.module import SurrogateModule
from surrogate.normaliser import PhysicalSurrogate


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory, make_data: Callable, stats: dict[str, float]
) -> tuple[SurrogateModule, Path]:
    """A tiny module fitted for one epoch; the checkpoint ModelCheckpoint wrote for it."""
    root = tmp_path_factory.mktemp("fit")
    torch.manual_seed(0)
    module = SurrogateModule(
        widths=(4, 8),
        convs_per_stage=1,
        kernel_size=(3, 5),
        head="gap",
        coord_channels=True,
        dropout=0.2,
        stem_stride=2,
        grid_shape=(16, 16),
    )
    callback = ModelCheckpoint(dirpath=root / "ckpt")
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        default_root_dir=root,
        logger=False,
        callbacks=[callback],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=make_data(stats))
    path = Path(callback.best_model_path)
    assert path.is_file()
    return module.eval(), path


def _x() -> torch.Tensor:
    return torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(9)) * 0.5


def _assert_one_line(err: pytest.ExceptionInfo[InputError], *parts: str) -> None:
    message = str(err.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


def test_lightning_checkpoint_loads_with_weights_only(
    trained: tuple[SurrogateModule, Path], stats: dict[str, float]
) -> None:
    module, path = trained
    model = load_model(path)
    assert isinstance(model, PhysicalSurrogate)
    assert not model.training
    assert not any(m.training for m in model.modules())
    assert model.grid_shape == (16, 16)
    assert model.target_norm.mean.item() == stats["target_mean"]
    assert model.input_norm.std.item() == stats["roughness_std"]
    x = _x()
    with torch.no_grad():
        torch.testing.assert_close(model(x), module(x), atol=1e-6, rtol=0)


def test_saved_checkpoint_equals_trainer_save(
    trained: tuple[SurrogateModule, Path], tmp_path: Path
) -> None:
    module, _ = trained
    path = tmp_path / "m.ckpt"
    module.trainer.save_checkpoint(path)
    ckpt = read_checkpoint(path)
    assert set(ckpt) >= {"state_dict", "hyper_parameters"}
    model = model_from_checkpoint(ckpt, path)
    x = _x()
    with torch.no_grad():
        torch.testing.assert_close(model(x), module(x), atol=1e-6, rtol=0)


def test_plain_dict_checkpoint_loads(trained: tuple[SurrogateModule, Path], tmp_path: Path) -> None:
    module, _ = trained
    path = tmp_path / "plain.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    x = _x()
    with torch.no_grad():
        torch.testing.assert_close(load_model(path)(x), module(x), atol=1e-6, rtol=0)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        load_model(tmp_path / "absent.ckpt")
    _assert_one_line(err, "absent.ckpt", "not found")


def test_directory_is_not_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "dir.ckpt").mkdir()
    with pytest.raises(InputError) as err:
        load_model(tmp_path / "dir.ckpt")
    _assert_one_line(err, "dir.ckpt")


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("notes.ckpt", b"this is a text file\nwith two lines\n"),
        ("empty.ckpt", b""),
        ("junk.ckpt", bytes(range(256)) * 4),
    ],
)
def test_unreadable_file(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError) as err:
        load_model(path)
    _assert_one_line(err, name, "not a loadable surrogate checkpoint")


def test_truncated_checkpoint(trained: tuple[SurrogateModule, Path], tmp_path: Path) -> None:
    _, good = trained
    data = good.read_bytes()
    path = tmp_path / "half.ckpt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as err:
        load_model(path)
    _assert_one_line(err, "half.ckpt", "not a loadable surrogate checkpoint")


class Payload:
    """Unpickling this runs code: it writes ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_code_in_pickle_is_not_run(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "marker.txt"
    payload = {"state_dict": {"x": Payload(marker)}, "hyper_parameters": {}}
    path = tmp_path / "evil.ckpt"
    if writer == "torch":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(InputError) as err:
        load_model(path)
    _assert_one_line(err, "evil.ckpt", "not a loadable surrogate checkpoint")
    assert not marker.exists()
    # the payload is live: an unsafe load would have run it
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.read_text() == "ran"


@pytest.mark.parametrize(
    "content",
    [
        {"weights": torch.zeros(2)},
        {"state_dict": {}},
        {"hyper_parameters": {}},
        {"state_dict": torch.zeros(1), "hyper_parameters": {}},
        {"state_dict": {}, "hyper_parameters": [1, 2]},
        torch.zeros(3),
    ],
)
def test_not_a_surrogate_checkpoint(tmp_path: Path, content: Any) -> None:
    path = tmp_path / "other.pt"
    torch.save(content, path)
    with pytest.raises(InputError) as err:
        load_model(path)
    _assert_one_line(err, "other.pt", "'state_dict'", "'hyper_parameters'")


def _tampered(trained: tuple[SurrogateModule, Path], path: Path, **hparams: Any) -> Path:
    ckpt = torch.load(trained[1], map_location="cpu", weights_only=True)
    ckpt["hyper_parameters"].update(hparams)
    for key in [k for k, v in hparams.items() if v is None]:
        del ckpt["hyper_parameters"][key]
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize(
    "change",
    [
        {"widths": [4, 16]},
        {"widths": [4, 8, 8]},
        {"coord_channels": False},
        {"kernel_size": [3, 3]},
    ],
)
def test_weights_mismatching_hparams(
    trained: tuple[SurrogateModule, Path], tmp_path: Path, change: dict[str, Any]
) -> None:
    path = _tampered(trained, tmp_path / "mismatch.ckpt", **change)
    with pytest.raises(InputError) as err:
        load_model(path)
    _assert_one_line(err, "mismatch.ckpt", "weights do not match the recorded architecture")


def test_hparams_missing_network_keys(
    trained: tuple[SurrogateModule, Path], tmp_path: Path
) -> None:
    path = _tampered(trained, tmp_path / "nohead.ckpt", head=None, widths=None)
    with pytest.raises(InputError) as err:
        load_model(path)
    _assert_one_line(err, "nohead.ckpt", "'widths'", "'head'")


@pytest.mark.parametrize(
    "change",
    [{"head": "bogus"}, {"widths": []}, {"widths": 8}, {"kernel_size": 3}, {"kernel_size": [3]}],
)
def test_invalid_hparams(
    trained: tuple[SurrogateModule, Path], tmp_path: Path, change: dict[str, Any]
) -> None:
    path = _tampered(trained, tmp_path / "invalid.ckpt", **change)
    with pytest.raises(InputError) as err:
        load_model(path)
    _assert_one_line(err, "invalid.ckpt", "invalid network hyper_parameters")


def test_state_dict_without_model_prefix(
    trained: tuple[SurrogateModule, Path], tmp_path: Path
) -> None:
    module, _ = trained
    path = tmp_path / "bare.ckpt"
    torch.save(
        {"state_dict": module.model.state_dict(), "hyper_parameters": dict(module.hparams)}, path
    )
    with pytest.raises(InputError) as err:
        load_model(path)
    _assert_one_line(err, "bare.ckpt", "weights do not match")


def test_hyper_parameters_asking_for_gigabytes_are_refused_before_allocation(
    trained: tuple[SurrogateModule, Path], tmp_path: Path
) -> None:
    """A few-kB checkpoint whose hyper-parameters describe a ~40 GB network: refused from the
    meta-device build, without allocating it (it would not fit this machine's memory)."""
    path = _tampered(trained, tmp_path / "huge.ckpt", widths=[4, 100_000, 100_000])
    assert path.stat().st_size < 1 << 20
    with pytest.raises(InputError) as err:
        load_model(path)
    _assert_one_line(err, "huge.ckpt", "weights do not match the recorded architecture")


def test_nan_weights_are_refused(trained: tuple[SurrogateModule, Path], tmp_path: Path) -> None:
    ckpt = torch.load(trained[1], map_location="cpu", weights_only=True)
    name = next(k for k in ckpt["state_dict"] if k.endswith("weight"))
    ckpt["state_dict"][name][0] = float("nan")
    torch.save(ckpt, tmp_path / "nan.ckpt")
    with pytest.raises(InputError) as err:
        load_model(tmp_path / "nan.ckpt")
    _assert_one_line(err, "nan.ckpt", "has NaN or Inf values", name.removeprefix("model."))
