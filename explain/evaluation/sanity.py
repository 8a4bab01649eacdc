"""Sanity checks for saliency maps (Adebayo et al. 2018): model and data randomisation.

Model randomisation re-initialises the model's layers and asks whether the maps change.
*Cascading*: layers are re-initialised one after another from the output towards the input,
each step keeping the earlier re-initialisations; *independent*: one layer at a time, the
others original. Data randomisation compares the maps of a model trained on the real targets
with those of a model trained on permuted targets, for the same designs.

Similarity per sample: Spearman's rho of ``|maps|`` (``spearman_abs``) and of the signed
maps (``spearman``), and SSIM of maps scaled to ``[0, 1]`` (``ssim``); then the mean and
standard deviation over samples, ignoring NaN (a constant map has no rank correlation) and
counting the NaNs. A method whose maps keep their similarity as the weights are destroyed
explains the input, not the model. Passing is necessary, not sufficient (Binder et al. 2022).

Re-initialisation calls each module's ``reset_parameters()`` under ``torch.manual_seed(seed +
i)`` for the ``i``-th layer of the order, inside ``torch.random.fork_rng`` so the global
random state is left as it was; layer ``i`` gets the same new weights in both modes. Conv and
Linear draw new Kaiming-uniform weights. BatchNorm's ``reset_parameters()`` is deterministic:
it resets the running statistics (mean 0, variance 1, ``num_batches_tracked`` 0) and the
affine parameters (weight 1, bias 0), so in eval mode a reset BatchNorm is the identity.
All work happens on a ``copy.deepcopy`` of the model; the caller's model is not touched.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from data.errors import InputError
from explain.evaluation.similarity import scale01, spearman, ssim
from explain.hooks import forward_hooks

ExplainFn = Callable[[nn.Module, torch.Tensor], Mapping[str, torch.Tensor]]
Mode = Literal["cascading", "independent"]

MEASURES = ("spearman_abs", "spearman", "ssim")
SPEARMAN_ABS_MAX = 0.5
SSIM_MAX = 0.5


@dataclass(frozen=True)
class Summary:
    """One similarity measure over samples: NaN-ignoring mean and std, and the NaN count."""

    mean: float
    std: float
    nans: int
    samples: int

    @classmethod
    def of(cls, values: np.ndarray) -> Summary:
        """Summarise per-sample values ``(sample,)``; mean and std are NaN if all are NaN."""
        finite = values[~np.isnan(values)]
        mean = float(finite.mean()) if finite.size else float("nan")
        std = float(finite.std()) if finite.size else float("nan")
        return cls(mean, std, int(values.size - finite.size), int(values.size))


@dataclass(frozen=True)
class RandomisationResult:
    """Similarity of each method's maps to the original maps after each randomisation step.

    Attributes:
        mode: ``"cascading"`` or ``"independent"``.
        seed: Base seed; layer ``i`` of ``layers`` was re-initialised under ``seed + i``.
        layers: The re-initialised modules, output first.
        values: ``{method: {measure: (step, sample)}}``; step 0 is the original model
            against itself, step ``k`` the model with ``layers[:k]`` (cascading) or only
            ``layers[k - 1]`` (independent) re-initialised.
        scale_only: The layers of ``layers`` that read one number per design
            (:func:`scalar_readouts`): re-initialising them can only rescale a gradient map.
    """

    mode: str
    seed: int
    layers: tuple[str, ...]
    values: dict[str, dict[str, np.ndarray]]
    scale_only: tuple[str, ...] = ()

    @property
    def steps(self) -> tuple[str, ...]:
        """Step labels: ``"original"``, then the layer re-initialised at each step."""
        return ("original", *self.layers)

    def summary(self, step: int) -> dict[str, dict[str, Summary]]:
        """``{method: {measure: Summary}}`` at ``step`` (``-1``: after the last layer)."""
        return {
            method: {measure: Summary.of(v[step]) for measure, v in measures.items()}
            for method, measures in self.values.items()
        }

    def final(self) -> dict[str, dict[str, Summary]]:
        """Summaries after the last step: the full cascade, in cascading mode."""
        return self.summary(-1)

    def over_steps(self) -> dict[str, dict[str, Summary]]:
        """``{method: {measure: Summary}}`` of the per-step mean similarity, steps 1 to L.

        The mean over the cascade (its area, per step) is what :func:`passes` judges in
        cascading mode: by the last step every layer is random and any map has changed, so the
        final step alone cannot tell a method that follows the model from one that only
        changes once the first convolutions - its edge filters - are reset.

        Steps that re-initialise a layer of :attr:`scale_only` are left out: behind a
        one-number-per-design bottleneck ``s(x)`` the model is ``g(s(x))`` and every gradient
        map is ``g'(s) grad s``, the same map rescaled, so such a step cannot tell any method
        from any other; counted, it would hold every method's mean up, a perfect one's too.

        A map that has become constant (e.g. all zero after a ReLU once the network is
        random) has no rank correlation with anything; it keeps none of the original's
        ranking, so its Spearman counts as 0 here. Dropping those steps instead would average
        each method over a different, earlier part of the cascade.
        """
        out: dict[str, dict[str, Summary]] = {}
        counted = [i + 1 for i, name in enumerate(self.layers) if name not in self.scale_only]
        for method, measures in self.values.items():
            out[method] = {}
            for measure, v in measures.items():
                v = v[[0, *counted]]
                steps = np.nan_to_num(v[1:], nan=0.0) if measure != "ssim" else v[1:]
                means = np.array(
                    [np.nanmean(row) if np.isfinite(row).any() else np.nan for row in steps]
                )
                out[method][measure] = Summary.of(means)
        return out


def randomisable_layers(model: nn.Module) -> list[str]:
    """Modules with parameters of their own or a ``reset_parameters``, output first.

    The order is the reverse of ``model.named_modules()``, i.e. of registration, which is the
    forward order for networks built as ``nn.Sequential`` stages followed by a head (e.g.
    ``RoughnessCNN``: ``network.fc`` first, the stem convolution last). Parameter-free
    modules such as the normalisers (buffers only) are left out.
    """
    names = [
        name
        for name, module in model.named_modules()
        if any(True for _ in module.parameters(recurse=False)) or _has_reset(module)
    ]
    return names[::-1]


def scalar_readouts(model: nn.Module, x: torch.Tensor, names: Sequence[str]) -> tuple[str, ...]:
    """The modules of ``names`` whose input holds one number per design, on one forward pass
    of ``x`` in eval mode (e.g. the transport network's head after its one-channel maximum)."""
    modules = dict(model.named_modules())
    sizes: dict[str, int] = {}

    def record(name: str):
        def hook(_module: nn.Module, inputs: object, _output: object) -> None:
            first = inputs[0] if isinstance(inputs, tuple) and inputs else None
            per_design = isinstance(first, torch.Tensor) and first.ndim and len(first) == len(x)
            # anything but a per-design tensor is taken to carry more than one number
            sizes[name] = max(sizes.get(name, 0), first[0].numel() if per_design else 2)

        return hook

    pairs = [(modules[n], record(n)) for n in names if n in modules]
    with forward_hooks(model, pairs), torch.no_grad():
        model(x)
    return tuple(n for n in names if sizes.get(n) == 1)


def _has_reset(module: nn.Module) -> bool:
    return callable(getattr(module, "reset_parameters", None))


def _resolve_layers(model: nn.Module, names: list[str]) -> list[nn.Module]:
    modules = dict(model.named_modules())
    if not names:
        raise InputError("layers is empty; the model has no layer with reset_parameters()")
    if len(set(names)) != len(names):
        raise InputError(f"layers must be distinct, got {names}")
    unknown = [n for n in names if n not in modules]
    if unknown:
        raise InputError(f"layers {unknown} not found; randomisable: {randomisable_layers(model)}")
    no_reset = [n for n in names if not _has_reset(modules[n])]
    if no_reset:
        raise InputError(f"layers {no_reset} have no reset_parameters(); pass layers= without them")
    return [modules[n] for n in names]


def _reinitialise(module: nn.Module, seed: int) -> None:
    devices = list(range(torch.cuda.device_count()))
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        module.reset_parameters()


def _maps(explain_fn: ExplainFn, model: nn.Module, x: torch.Tensor) -> dict[str, np.ndarray]:
    maps = explain_fn(model, x)
    out = {m: v.detach().to("cpu", torch.float64).numpy() for m, v in maps.items()}
    bad = {m: v.shape for m, v in out.items() if v.ndim != 3 or v.shape[0] != x.shape[0]}
    if not out or bad:
        raise InputError(
            f"explain_fn must return {{method: (batch={x.shape[0]}, y, x) maps}}, got {bad or '{}'}"
        )
    return out


def compare(a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample ``{measure: (sample,)}`` similarity of maps ``a`` and ``b (sample, y, x)``."""
    return {
        "spearman_abs": spearman(np.abs(a), np.abs(b)),
        "spearman": spearman(a, b),
        "ssim": ssim(scale01(a), scale01(b)),
    }


def _compare_all(
    original: Mapping[str, np.ndarray], maps: Mapping[str, np.ndarray]
) -> dict[str, dict[str, np.ndarray]]:
    if set(original) != set(maps):
        raise InputError(f"methods differ: {sorted(original)} vs {sorted(maps)}")
    return {m: compare(original[m], maps[m]) for m in original}


def model_randomisation(
    model: nn.Module,
    x: torch.Tensor,
    explain_fn: ExplainFn,
    *,
    mode: Mode = "cascading",
    seed: int = 0,
    layers: Sequence[str] | None = None,
) -> RandomisationResult:
    """Model-parameter randomisation test, cascading or independent (module docstring).

    Args:
        model: Any module; it is deep-copied and left bit-identical, mode flags included.
        x: Inputs ``(batch, 1, y, x)`` passed unchanged to ``explain_fn``.
        explain_fn: ``explain_fn(model, x) -> {method: maps (batch, y, x)}``; it must not
            depend on randomness outside the model.
        mode: ``"cascading"`` or ``"independent"``.
        seed: Base seed; layer ``i`` of the order is re-initialised under ``seed + i``.
        layers: Module names to re-initialise, in this order; default
            :func:`randomisable_layers` (output towards input).

    Returns:
        :class:`RandomisationResult` with ``len(layers) + 1`` steps, step 0 the original.
    """
    if mode not in ("cascading", "independent"):
        raise InputError(f"mode must be 'cascading' or 'independent', got {mode!r}")
    work = copy.deepcopy(model)
    names = randomisable_layers(work) if layers is None else list(layers)
    modules = _resolve_layers(work, names)
    scale_only = scalar_readouts(work, x, names)
    original = _maps(explain_fn, work, x)
    steps = [_compare_all(original, original)]
    for i, module in enumerate(modules):
        saved = copy.deepcopy(module.state_dict()) if mode == "independent" else None
        _reinitialise(module, seed + i)
        steps.append(_compare_all(original, _maps(explain_fn, work, x)))
        if saved is not None:
            module.load_state_dict(saved)
    values = {
        method: {measure: np.stack([s[method][measure] for s in steps]) for measure in MEASURES}
        for method in original
    }
    return RandomisationResult(mode, seed, tuple(names), values, scale_only)


def data_randomisation(
    maps_true: Mapping[str, torch.Tensor | np.ndarray],
    maps_random: Mapping[str, torch.Tensor | np.ndarray],
) -> dict[str, dict[str, Summary]]:
    """Similarity of two models' maps for the same designs, per method.

    Args:
        maps_true: ``{method: (sample, y, x)}`` from the model trained on the real targets.
        maps_random: The same methods and designs from the model trained on permuted targets.

    Returns:
        ``{method: {measure: Summary}}``, for :func:`passes`.
    """

    def as_numpy(maps: Mapping[str, torch.Tensor | np.ndarray]) -> dict[str, np.ndarray]:
        return {
            m: v.detach().cpu().double().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
            for m, v in maps.items()
        }

    values = _compare_all(as_numpy(maps_true), as_numpy(maps_random))
    return {m: {k: Summary.of(v) for k, v in by.items()} for m, by in values.items()}


def passes(
    similarity: Mapping[str, Summary],
    *,
    spearman_abs_max: float = SPEARMAN_ABS_MAX,
    ssim_max: float = SSIM_MAX,
) -> bool:
    """Whether one method passes a randomisation check.

    Rule: averaged over the cascade's steps (:meth:`RandomisationResult.over_steps`; or
    against the permuted-target model), the mean Spearman of ``|maps|`` with the original is
    below ``spearman_abs_max`` (default 0.5) AND the mean SSIM of the ``[0, 1]``-scaled maps
    is below ``ssim_max`` (default 0.5). This is
    Adebayo's visual criterion "the maps no longer resemble the original" made numeric: 0.5
    is halfway between identical (1) and unrelated (about 0). The signed Spearman is reported
    but not used, since re-initialisation may flip the sign of an otherwise unchanged map. A
    NaN mean (every sample constant) cannot be judged and fails. Necessary, not sufficient.

    Args:
        similarity: ``{measure: Summary}`` for one method, e.g.
            ``result.over_steps()["hirescam"]`` or ``data_randomisation(...)["hirescam"]``.
        spearman_abs_max: Threshold on the mean Spearman of ``|maps|``.
        ssim_max: Threshold on the mean SSIM.
    """
    rho = similarity["spearman_abs"].mean
    s = similarity["ssim"].mean
    return bool(rho < spearman_abs_max and s < ssim_max)
