"""Load a trained surrogate from a checkpoint without unpickling arbitrary objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from data.errors import InputError
from surrogate.architectures import ARCHITECTURES, build_network, network_arguments
from surrogate.normaliser import PhysicalSurrogate


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dictionary, read with ``weights_only=True``; one-line errors otherwise."""
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"{path}: checkpoint not found (expected a .ckpt file written by 'surrogate fit')"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # arbitrary bytes make torch.load raise almost any type
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: not a loadable surrogate checkpoint ({first[:160]})") from None
    if not isinstance(ckpt, dict) or not all(
        isinstance(ckpt.get(key), dict) for key in ("state_dict", "hyper_parameters")
    ):
        raise InputError(
            f"{path}: not a surrogate checkpoint "
            "(expected keys 'state_dict' and 'hyper_parameters')"
        )
    return ckpt


def checkpoint_splits(ckpt: dict[str, Any]) -> dict[str, list[int]]:
    """``{"train"|"val"|"test": sample indices}`` recorded by the data module, where present."""
    state = ckpt.get("CampaignDataModule", {})
    return {
        key.removeprefix("split_"): list(value)
        for key, value in state.items()
        if key.startswith("split_")
    }


def checkpoint_fingerprint(ckpt: dict[str, Any]) -> str | None:
    """The fingerprint of the campaign the recorded split indexes (``None``: not recorded)."""
    return ckpt.get("CampaignDataModule", {}).get("campaign_fingerprint")


def model_from_checkpoint(
    ckpt: dict[str, Any], path: str | Path = "<checkpoint>"
) -> PhysicalSurrogate:
    """Rebuild :class:`PhysicalSurrogate` from a checkpoint dictionary."""
    hparams = ckpt["hyper_parameters"]
    architecture = hparams.get("architecture", "cnn")
    if architecture not in ARCHITECTURES:
        raise InputError(f"{path}: unknown network architecture {architecture!r}")
    keys = list(network_arguments(architecture))
    missing = [k for k in keys if k not in hparams]
    if missing:
        raise InputError(
            f"{path}: checkpoint hyper_parameters lack {missing}; not a surrogate checkpoint"
        )
    arguments = {k: hparams[k] for k in keys}
    state = {
        k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")
    }
    # built first on the meta device (no memory): hyper-parameters that ask for more than the
    # stored weights hold are refused before anything is allocated
    _check_against_weights(_build(architecture, arguments, path, "meta"), state, path)
    model = _build(architecture, arguments, path, "cpu")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(
            f"{path}: weights do not match the recorded architecture "
            f"({str(exc).splitlines()[0][:160]})"
        ) from None
    model.grid_shape = tuple(hparams.get("grid_shape", (0, 0)))
    return model.eval()


def _build(
    architecture: str, arguments: dict[str, Any], path: str | Path, device: str
) -> PhysicalSurrogate:
    try:
        with torch.device(device):
            return PhysicalSurrogate(build_network(architecture, **arguments))
    except (TypeError, ValueError, IndexError, RuntimeError, OverflowError) as exc:
        first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: invalid network hyper_parameters ({first})") from None


# values a network may hold besides its stored weights (non-persistent buffers), at most
_UNSTORED_VALUES = 1 << 24


def _check_against_weights(probe: torch.nn.Module, state: dict[str, Any], path: str | Path) -> None:
    """The recorded architecture (built on the meta device) has exactly the stored weights'
    names and shapes, and every stored weight is a finite tensor."""
    expected = {k: tuple(v.shape) for k, v in probe.state_dict().items()}
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise InputError(f"{path}: weight {name!r} is not a tensor; not a surrogate checkpoint")
        if name in expected and tuple(value.shape) != expected[name]:
            raise InputError(
                f"{path}: weights do not match the recorded architecture ({name!r} has shape "
                f"{tuple(value.shape)}, the hyper_parameters give {expected[name]})"
            )
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise InputError(
                f"{path}: weight {name!r} has NaN or Inf values; expected finite weights"
            )
    missing = sorted(set(expected) - set(state))
    if missing:
        raise InputError(
            f"{path}: weights do not match the recorded architecture (missing {missing[:3]})"
        )
    stored = {id(t) for t in probe.state_dict().values()}
    extra = sum(b.numel() for b in probe.buffers() if id(b) not in stored)
    if extra > _UNSTORED_VALUES:
        raise InputError(
            f"{path}: the recorded hyper_parameters ask for {extra} values beyond the stored "
            "weights; the checkpoint is inconsistent"
        )


def load_model(path: str | Path) -> PhysicalSurrogate:
    """The trained surrogate in eval mode, on the CPU.

    Takes roughness ``(batch, 1, y, x)`` in delta and returns the maximum vorticity
    ``(batch,)`` in U_e/delta; normalisation happens inside. The file is read with
    ``torch.load(..., weights_only=True)``: nothing in it is executed.
    """
    return model_from_checkpoint(read_checkpoint(path), path)
