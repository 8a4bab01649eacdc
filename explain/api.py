"""``explain(model, roughness, ...)``: every method's maps for many designs as an xarray Dataset.

:class:`Explainer` holds the choices (methods, layer, interpolation, rectification,
normalisation) and turns one batch of designs into a small Dataset; :func:`explain`
concatenates the batches in memory, and ``surrogate explain`` streams them to a file so
that memory stays bounded by the batch size, not the campaign size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch
import xarray as xr
from torch import nn
from tqdm import tqdm

from data.errors import InputError
from explain.batching import model_device
from explain.catalogue import METHODS, resolve_methods
from explain.gradient import GRADIENT_METHODS, find_layer, gradient_maps
from explain.interpolation import MODES, upsample

DEFAULT_METHODS = ("cam", "hirescam", "layercam")
# CAM's map plus the output at zero activation must reproduce the prediction; above this
# relative residual the explained layer does not feed a linear head and "cam" is refused.
CAM_TOLERANCE = 1e-4


class LayerInfo(NamedTuple):
    """A module with a spatial output: name, channels and map size for a given input grid."""

    name: str
    channels: int
    height: int
    width: int
    has_parameters: bool


def candidate_layers(model: nn.Module, shape: tuple[int, int]) -> list[LayerInfo]:
    """Every module whose output is a ``(batch, C, h, w)`` map with ``h * w > 1``.

    Listed in the order the modules finish during a forward pass of a zero field of
    ``shape``, so a container comes right after its last child.
    """
    found: list[LayerInfo] = []
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue
        own = any(True for _ in module.parameters(recurse=False))

        def hook(_m: nn.Module, _i: object, out: object, name: str = name, own: bool = own) -> None:
            if isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[2] * out.shape[3] > 1:
                found.append(LayerInfo(name, *map(int, out.shape[1:]), has_parameters=own))

        handles.append(module.register_forward_hook(hook))
    was_training = model.training
    device = model_device(model)
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 1, *shape, device=device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return found


def spatial_layers(model: nn.Module, shape: tuple[int, int]) -> list[tuple[str, tuple[int, int]]]:
    """``(name, (h, w))`` of every module with a spatial output, in completion order."""
    return [(info.name, (info.height, info.width)) for info in candidate_layers(model, shape)]


def default_layer(model: nn.Module, shape: tuple[int, int]) -> str:
    """The last module, outermost first, whose output still has a spatial map."""
    layers = candidate_layers(model, shape)
    if not layers:
        raise InputError("the model has no layer with a spatial (batch, C, y, x) output")
    return layers[-1].name


def pyramid_layers(model: nn.Module, shape: tuple[int, int]) -> list[str]:
    """Poly-CAM's layers, shallow to deep: the last module at each resolution.

    That is the module just before each downsampling (and the deepest map). Modules that
    finish before the first module with parameters (e.g. appended coordinate channels)
    are not features and are skipped.
    """
    layers = candidate_layers(model, shape)
    first = next((i for i, info in enumerate(layers) if info.has_parameters), 0)
    last_at: dict[tuple[int, int], str] = {}
    for info in layers[first:]:
        last_at.pop((info.height, info.width), None)
        last_at[(info.height, info.width)] = info.name
    return list(last_at.values())


def _output_at_zero_activation(model: nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    """The output with ``layer``'s activation replaced by zeros (CAM's bias term), in eval mode."""
    modes = {m: m.training for m in model.modules()}
    zero = find_layer(model, layer).register_forward_hook(lambda _m, _i, out: torch.zeros_like(out))
    try:
        model.eval()
        with torch.no_grad():
            return model(x)
    finally:
        zero.remove()
        for module, mode in modes.items():
            module.training = mode


class Explainer:
    """Attribution maps of one model, batch by batch, with the choices fixed up front.

    Args:
        model: Any module mapping roughness ``(batch, 1, y, x)`` in delta to ``(batch,)``.
        shape: The input grid ``(y, x)``.
        methods: Names from :data:`explain.catalogue.METHODS` (``polycam`` = all three variants).
        layer: Module to explain; default the last module with a spatial output.
        interpolation: Modes of :func:`explain.interpolation.upsample` for the input-grid maps.
        relu: Keep only the positive part of every map.
        normalise: Divide each map by its largest magnitude (maps become unitless).
        baseline: Reference field of the perturbation methods; default a smooth wall (h = 0).
        polycam_layers: Poly-CAM's layers, shallow to deep; default :func:`pyramid_layers`.
        chunk: Masked inputs per forward pass of the perturbation methods.
        device: Where to compute; default the model's device.
    """

    def __init__(
        self,
        model: nn.Module,
        shape: tuple[int, int],
        methods: Sequence[str] = DEFAULT_METHODS,
        layer: str | None = None,
        interpolation: Sequence[str] = ("none", "bilinear"),
        relu: bool = False,
        normalise: bool = False,
        baseline: torch.Tensor | None = None,
        polycam_layers: Sequence[str] | None = None,
        chunk: int = 256,
        device: str | torch.device | None = None,
    ) -> None:
        self.device = torch.device(device) if device else model_device(model)
        self.model = model.to(self.device)
        self.shape = (int(shape[0]), int(shape[1]))
        self.methods = resolve_methods(list(methods))
        bad = [m for m in interpolation if m not in MODES]
        if bad or not interpolation:
            raise InputError(f"unknown interpolation {bad or '(none given)'}; choose from {MODES}")
        self.interpolation = list(interpolation)
        layers = {info.name: info for info in candidate_layers(self.model, self.shape)}
        self.layer = layer or default_layer(self.model, self.shape)
        find_layer(self.model, self.layer)  # unknown name: one line listing the layers
        if self.layer not in layers:
            raise InputError(
                f"layer {self.layer!r} has no spatial (batch, C, y, x) output for a "
                f"{self.shape[0]}x{self.shape[1]} input; candidates: {', '.join(layers)}"
            )
        self.layer_shape = (layers[self.layer].height, layers[self.layer].width)
        self.polycam_layers: list[str] = []
        if any(METHODS[m].resolution == "pyramid" for m in self.methods):
            self.polycam_layers = list(polycam_layers or pyramid_layers(self.model, self.shape))
            for name in self.polycam_layers:
                if name not in layers:
                    raise InputError(f"Poly-CAM layer {name!r} has no spatial output")
            first = layers[self.polycam_layers[0]]
            self.pyramid_shape = (first.height, first.width)
        self.relu = relu
        self.normalise = normalise
        self.baseline = baseline
        self.chunk = chunk
        self.cam_residual = 0.0  # largest |prediction - bias - sum(CAM)| seen, in U_e/delta
        self.cam_scale = 0.0  # largest |prediction - bias| seen, for a relative figure

    # -- raw maps --------------------------------------------------------------------------

    def raw_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Prediction ``(batch,)`` and each method's native map, before relu/normalise."""
        maps: dict[str, torch.Tensor] = {}
        preds = []
        wanted = [m for m in self.methods if m in GRADIENT_METHODS]
        if wanted:
            y, found = gradient_maps(self.model, x, self.layer, wanted)
            preds.append(y)
            maps.update(found)
            if "cam" in found:
                self._check_cam(x, y, found["cam"])
        if "scorecam" in self.methods:
            from explain.perturbation import score_cam

            y, maps["scorecam"] = score_cam(
                self.model, x, self.layer, baseline=self.baseline, chunk=self.chunk
            )
            preds.append(y)
        variants = [m for m in self.methods if METHODS[m].resolution == "pyramid"]
        if variants:
            from explain.perturbation import poly_cam

            y, found = poly_cam(
                self.model,
                x,
                self.polycam_layers,
                variants=tuple(variants),
                baseline=self.baseline,
                chunk=self.chunk,
            )
            preds.append(y)
            maps.update(found)
        if "guided-backprop" in self.methods:
            from explain.guided import guided_backprop

            y, maps["guided-backprop"] = guided_backprop(self.model, x)
            preds.append(y)
        if "guided-gradcam" in self.methods:
            from explain.guided import guided_gradcam

            y, maps["guided-gradcam"] = guided_gradcam(self.model, x, self.layer)
            preds.append(y)
        return preds[0], maps

    def _check_cam(self, x: torch.Tensor, y: torch.Tensor, cam: torch.Tensor) -> None:
        """CAM plus the zero-activation output must give the prediction; record the residual."""
        offset = _output_at_zero_activation(self.model, x, self.layer)
        residual = (y - offset - cam.sum(dim=(1, 2))).abs().max().item()
        self.cam_residual = max(self.cam_residual, residual)
        self.cam_scale = max(self.cam_scale, (y - offset).abs().max().item())

    @property
    def cam_relative_residual(self) -> float:
        """``cam_residual`` over the largest ``|prediction - bias|``."""
        return self.cam_residual / self.cam_scale if self.cam_scale > 0 else 0.0

    # -- one batch as a Dataset ------------------------------------------------------------

    def _finish(self, m: torch.Tensor) -> torch.Tensor:
        if self.relu:
            m = m.clamp_min(0)
        if self.normalise:
            peak = m.abs().amax(dim=(1, 2), keepdim=True)
            m = m / torch.where(peak > 0, peak, torch.ones_like(peak))
        return m

    def units(self, method: str) -> str:
        return "1" if self.normalise else METHODS[method].units

    def batch(self, roughness: torch.Tensor | np.ndarray, first_sample: int = 0) -> xr.Dataset:
        """Maps of one batch of designs ``(batch, y, x)`` or ``(batch, 1, y, x)`` in delta."""
        x = _as_batch(roughness).to(self.device)
        if tuple(x.shape[-2:]) != self.shape:
            raise InputError(f"roughness grid {tuple(x.shape[-2:])} differs from {self.shape}")
        y, raw = self.raw_maps(x)
        maps = {m: self._finish(raw[m]) for m in self.methods}
        full = torch.stack(
            [
                torch.stack([upsample(maps[m], self.shape, mode) for mode in self.interpolation], 1)
                for m in self.methods
            ],
            1,
        )
        samples = np.arange(first_sample, first_sample + len(x))
        ds = xr.Dataset(
            {
                "prediction": ("sample", y.cpu().numpy()),
                "attribution": (("sample", "method", "interpolation", "y", "x"), _np(full)),
            },
            coords={
                "sample": samples,
                "method": self.methods,
                "interpolation": self.interpolation,
                "method_units": ("method", [self.units(m) for m in self.methods]),
            },
        )
        at_layer = [m for m in self.methods if METHODS[m].resolution == "layer"]
        if at_layer:
            ds["attribution_native"] = (
                ("sample", "layer_method", "y_layer", "x_layer"),
                _np(torch.stack([maps[m] for m in at_layer], 1)),
            )
            ds = ds.assign_coords(layer_method=at_layer)
        at_pyramid = [m for m in self.methods if METHODS[m].resolution == "pyramid"]
        if at_pyramid:
            ds["attribution_polycam"] = (
                ("sample", "polycam_method", "y_polycam", "x_polycam"),
                _np(torch.stack([maps[m] for m in at_pyramid], 1)),
            )
            ds = ds.assign_coords(polycam_method=at_pyramid)
        _describe(ds)
        ds.attrs.update(self.attrs())
        return ds

    def attrs(self) -> dict[str, str | float | int]:
        """Global attributes recording every choice that shaped the maps."""
        out: dict[str, str | float | int] = {
            "layer": self.layer,
            "layer_shape": f"{self.layer_shape[0]}x{self.layer_shape[1]}",
            "methods": ",".join(self.methods),
            "interpolation": ",".join(self.interpolation),
            "relu": str(self.relu).lower(),
            "normalised": str(self.normalise).lower(),
            "alignment": "cell centres, align_corners=False",
            "not_recommended": ",".join(m for m in self.methods if not METHODS[m].recommended),
        }
        if self.polycam_layers:
            out["polycam_layers"] = ",".join(self.polycam_layers)
        if any(METHODS[m].perturbation for m in self.methods):
            out["baseline"] = "smooth wall (h = 0)" if self.baseline is None else "user field"
        if "cam" in self.methods:
            out["cam_residual"] = self.cam_residual
            out["cam_relative_residual"] = self.cam_relative_residual
        return out

    def batches(
        self, roughness: Sequence | np.ndarray, batch_size: int = 64, progress: bool = False
    ) -> Iterator[xr.Dataset]:
        """One Dataset per batch of ``roughness`` (anything sliceable along its first axis)."""
        n = len(roughness)
        bar = tqdm(total=n, unit="design", desc="explaining", disable=not progress)
        with bar:
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)
                yield self.batch(np.asarray(roughness[start:stop]), first_sample=start)
                bar.update(stop - start)

    def check_cam(self) -> None:
        """Refuse 'cam' where its decomposition does not hold (no pooled linear head)."""
        if "cam" in self.methods and self.cam_relative_residual > CAM_TOLERANCE:
            raise InputError(
                f"method 'cam': prediction - bias - sum(map) leaves a relative residual of "
                f"{self.cam_relative_residual:.2g} at layer {self.layer!r}; CAM needs the layer "
                "to feed a global-average-pool + linear head (use 'gradcam' or 'hirescam')"
            )


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32, copy=False)


def _as_batch(roughness: np.ndarray | torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(roughness), dtype=torch.float32)
    if x.dim() == 3:
        x = x[:, None]
    if x.dim() != 4 or x.shape[1] != 1:
        raise InputError(
            f"roughness: expected (sample, y, x) or (sample, 1, y, x), got {tuple(x.shape)}"
        )
    return x


def _describe(ds: xr.Dataset) -> None:
    ds["prediction"].attrs.update(units="U_e/delta", long_name="surrogate max vorticity")
    ds["attribution"].attrs.update(
        units="see method_units", long_name="attribution on the input grid"
    )
    if "attribution_native" in ds:
        ds["attribution_native"].attrs.update(
            units="see method_units", long_name="attribution on the explained layer's grid"
        )
    if "attribution_polycam" in ds:
        ds["attribution_polycam"].attrs.update(
            units="see method_units", long_name="Poly-CAM attribution on its finest layer's grid"
        )


def explain(
    model: nn.Module,
    roughness: np.ndarray | torch.Tensor,
    methods: Sequence[str] = DEFAULT_METHODS,
    layer: str | None = None,
    interpolation: Sequence[str] = ("none", "bilinear"),
    batch_size: int = 64,
    relu: bool = False,
    normalise: bool = False,
    progress: bool = False,
    **options: object,
) -> xr.Dataset:
    """Attribution maps of ``model``'s prediction for each design, in memory.

    Args:
        model: Any module mapping roughness ``(batch, 1, y, x)`` in delta to ``(batch,)``.
        roughness: Heights ``(sample, y, x)`` or ``(sample, 1, y, x)`` in delta.
        methods: Names from :data:`explain.catalogue.METHODS`.
        layer: Module name to explain; default the last module with a spatial output.
        interpolation: Modes of :func:`explain.interpolation.upsample`.
        batch_size: Designs per pass.
        relu: Keep only positive attributions.
        normalise: Scale each map to a largest magnitude of 1.
        progress: Show a progress bar.
        **options: Further :class:`Explainer` arguments (``baseline``, ``polycam_layers``,
            ``chunk``, ``device``).

    Returns:
        Dataset with ``prediction(sample)``, ``attribution(sample, method, interpolation, y, x)``,
        and the native maps ``attribution_native(sample, layer_method, y_layer, x_layer)``
        (layer methods) and ``attribution_polycam`` (Poly-CAM). Maps are signed unless the
        method rectifies; ``method_units`` gives each method's units. ``method`` is also a
        keyword of ``Dataset.sel``: select with a dict, ``ds.sel({"method": "cam"})``.

    Raises:
        InputError: Unknown method, layer or interpolation; a layer without spatial output;
            'cam' where the layer does not feed a pooled linear head.
    """
    x = _as_batch(roughness)
    explainer = Explainer(
        model, tuple(x.shape[-2:]), methods, layer, interpolation, relu, normalise, **options
    )
    parts = list(explainer.batches(x, batch_size, progress))
    explainer.check_cam()
    ds = xr.concat(parts, dim="sample", data_vars="minimal", coords="minimal", compat="override")
    ds.attrs.update(explainer.attrs())
    return ds
