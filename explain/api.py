"""``explain(model, roughness, ...)``: every method's maps for many designs as an xarray Dataset.

:class:`Explainer` holds the choices (methods, layer, interpolation, rectification,
normalisation) and turns one batch of designs into a small Dataset; :func:`explain`
concatenates the batches in memory, and ``surrogate explain`` streams them to a file so
that memory stays bounded by the batch size, not the campaign size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import xarray as xr
from torch import nn
from tqdm import tqdm

from data.errors import InputError
from explain.baselines import baseline_field
from explain.batching import model_device, one_per_input
from explain.catalogue import METHOD_DIM, METHODS, resolve_methods
from explain.gradient import INPUT_FORMULAS, LAYER_FORMULAS, gradient_maps
from explain.guided import guided_backprop, guided_gradcam
from explain.hooks import captured, eval_mode, zeroed_layer
from explain.inputs import check_model, roughness_batch
from explain.interpolation import MODES, upsample
from explain.layers import candidate_layers, default_layer, find_layer, pyramid_layers
from explain.path import integrated_gradients
from explain.perturbation import POLY_VARIANTS, poly_cam, score_cam
from explain.references import REFERENCES

DEFAULT_METHODS = ("cam", "hirescam", "layercam")  # "gradcam" stands in where CAM is undefined
# CAM's map plus the output at zero activation must reproduce the prediction; above this
# relative residual the explained layer does not feed a linear head and "cam" is refused.
CAM_TOLERANCE = 1e-4

Maps = dict[str, torch.Tensor]


def _gradient_family(ex: Explainer, x: torch.Tensor, names: list[str]) -> tuple[torch.Tensor, Maps]:
    return gradient_maps(ex.model, x, ex.layer, names)


def _path_family(ex: Explainer, x: torch.Tensor, names: list[str]) -> tuple[torch.Tensor, Maps]:
    y, found, f_b = integrated_gradients(
        ex.model, x, ex.reference(x), steps=ex.ig_steps, chunk=ex.chunk
    )
    ex.record_completeness(found.sum(dim=(1, 2)) - (y - f_b), y - f_b)
    ex.last_ig_reference = f_b.detach()
    return y, {"integrated-gradients": found}


def _scorecam_family(ex: Explainer, x: torch.Tensor, names: list[str]) -> tuple[torch.Tensor, Maps]:
    y, found = score_cam(ex.model, x, ex.layer, baseline=ex.reference(x), chunk=ex.chunk)
    return y, {"scorecam": found}


def _polycam_family(ex: Explainer, x: torch.Tensor, names: list[str]) -> tuple[torch.Tensor, Maps]:
    return poly_cam(
        ex.model, x, ex.polycam_layers, variants=tuple(names), baseline=ex.reference(x),
        chunk=ex.chunk,
    )  # fmt: skip


def _guided_family(ex: Explainer, x: torch.Tensor, names: list[str]) -> tuple[torch.Tensor, Maps]:
    maps: Maps = {}
    for name in names:
        y, maps[name] = GUIDED[name](ex, x)
    return y, maps


def _reference_family(
    ex: Explainer, x: torch.Tensor, names: list[str]
) -> tuple[torch.Tensor, Maps]:
    with eval_mode(ex.model), torch.no_grad():
        y = one_per_input(ex.model(x), x.shape[0])
    return y, {name: REFERENCES[name](x) for name in names}


GUIDED = {
    "guided-backprop": lambda ex, x: guided_backprop(ex.model, x),
    "guided-gradcam": lambda ex, x: guided_gradcam(ex.model, x, ex.layer),
}


def implemented(family: str) -> tuple[str, ...]:
    """The methods a family's function can compute (``tests/explain/test_catalogue.py``)."""
    return {
        "gradient": (*LAYER_FORMULAS, *INPUT_FORMULAS),
        "path": ("integrated-gradients",),
        "scorecam": ("scorecam",),
        "polycam": POLY_VARIANTS,
        "guided": tuple(GUIDED),
        "reference": tuple(REFERENCES),
    }.get(family, ())


# family -> the function that computes its methods' native maps in one go; dispatch order
FAMILIES: dict[str, Callable[[Explainer, torch.Tensor, list[str]], tuple[torch.Tensor, Maps]]] = {
    "gradient": _gradient_family,
    "path": _path_family,
    "scorecam": _scorecam_family,
    "polycam": _polycam_family,
    "guided": _guided_family,
    "reference": _reference_family,
}


def cam_applies(model: nn.Module, shape: tuple[int, int], layer: str) -> bool:
    """Whether ``layer`` feeds a global-average-pool + linear head, so that CAM is defined.

    Probed on two small random fields (heights of 0.02 delta rms): the output's gradient with
    respect to the layer must be constant over the map, as behind a pooled linear head.
    """
    device = model_device(model)
    probe = 0.02 * torch.randn(2, 1, *shape, generator=torch.Generator().manual_seed(0))
    x = probe.to(device).requires_grad_(True)
    with eval_mode(model), captured(model, layer) as store, torch.enable_grad():
        y = one_per_input(model(x), len(x))
        (grad,) = torch.autograd.grad(y.sum(), store["activation"])
    mean = grad.mean(dim=(2, 3), keepdim=True)
    return bool((grad - mean).abs().amax() <= 1e-5 * mean.abs().amax().clamp_min(1e-12))


def default_methods(model: nn.Module, shape: tuple[int, int], layer: str) -> tuple[str, ...]:
    """:data:`DEFAULT_METHODS`, with Grad-CAM for CAM where the layer has no pooled linear head."""
    if cam_applies(model, shape, layer):
        return DEFAULT_METHODS
    return tuple("gradcam" if m == "cam" else m for m in DEFAULT_METHODS)


def every_method(
    model: nn.Module, shape: tuple[int, int], layer: str | None = None
) -> tuple[str, ...]:
    """Every implemented catalogue method (null references included), without CAM where
    ``layer`` (default: the model's last spatial layer) has no pooled linear head."""
    layer = layer or default_layer(model, shape)
    names = [n for n, m in METHODS.items() if n in implemented(m.family)]
    if not cam_applies(model, shape, layer):
        names.remove("cam")
    return tuple(names)


class Explainer:
    """Attribution maps of one model, batch by batch, with the choices fixed up front.

    Args:
        model: Any module mapping roughness ``(batch, 1, y, x)`` in delta to ``(batch,)``.
        shape: The input grid ``(y, x)``.
        methods: Names from :data:`explain.catalogue.METHODS` (``polycam`` = all three variants);
            default :func:`default_methods` (CAM, HiResCAM, LayerCAM; Grad-CAM for CAM where
            the layer has no pooled linear head).
        layer: Module to explain; default the last module with a spatial output.
        interpolation: Modes of :func:`explain.interpolation.upsample` for the input-grid maps.
        relu: Keep only the positive part of every map.
        normalise: Divide each map by its largest magnitude (maps become unitless).
        baseline: Reference field of integrated gradients and the perturbation methods: a name
            of :data:`explain.baselines.BASELINES` (``"smooth-wall"``, ``"blurred"``) or a field;
            default the smooth wall (h = 0).
        polycam_layers: Poly-CAM's layers, shallow to deep; default :func:`pyramid_layers`.
        chunk: Inputs per forward pass of the path and perturbation methods.
        ig_steps: Quadrature nodes of integrated gradients.
        device: Where to compute; default the model's device.
    """

    def __init__(
        self,
        model: nn.Module,
        shape: tuple[int, int],
        methods: Sequence[str] | None = None,
        layer: str | None = None,
        interpolation: Sequence[str] = ("none", "bilinear"),
        relu: bool = False,
        normalise: bool = False,
        baseline: str | torch.Tensor | None = None,
        polycam_layers: Sequence[str] | None = None,
        chunk: int = 256,
        device: str | torch.device | None = None,
        ig_steps: int = 32,
    ) -> None:
        self.device = torch.device(device) if device else model_device(model)
        self.model = model.to(self.device)
        self.shape = (int(shape[0]), int(shape[1]))
        check_model(self.model, self.shape)
        # one name where a sequence is expected is one name, not its letters
        interpolation = [interpolation] if isinstance(interpolation, str) else interpolation
        methods = [methods] if isinstance(methods, str) else methods
        polycam_layers = [polycam_layers] if isinstance(polycam_layers, str) else polycam_layers
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
        info = layers[self.layer]
        self.layer_shape = (info.height, info.width)
        if methods is None:
            methods = default_methods(self.model, self.shape, self.layer)
        self.methods = resolve_methods(list(methods))
        at_layer = [m for m in self.methods if METHODS[m].resolution != "input"]
        if at_layer and not info.on_grid(self.shape):
            raise InputError(
                f"layer {self.layer!r} gives a {info.height}x{info.width} map, not a map on the "
                f"{self.shape[0]}x{self.shape[1]} roughness grid, so {at_layer} cannot be drawn "
                "on the roughness; choose another --layer or a method at input resolution "
                "(gradient-x-input, integrated-gradients)"
            )
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
        self.ig_steps = ig_steps
        self.ig_residual = 0.0  # largest |sum(IG) - (f(x) - f(b))| seen, in U_e/delta
        self.ig_scale = 0.0  # largest |f(x) - f(b)| seen
        self.last_ig_residual: torch.Tensor | None = None  # per design, of the last batch
        self.last_ig_reference: torch.Tensor | None = None  # f(baseline), of the last batch
        self.cam_residual = 0.0  # largest |prediction - bias - sum(CAM)| seen, in U_e/delta
        self.cam_scale = 0.0  # largest |prediction - bias| seen, for a relative figure

    # -- raw maps --------------------------------------------------------------------------

    def raw_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, Maps]:
        """Prediction ``(batch,)`` and each method's native map, before relu/normalise.

        Methods are computed family by family (:data:`FAMILIES`), one pass per family; the
        prediction is the first family's.
        """
        maps: Maps = {}
        preds = []
        for family, run in FAMILIES.items():
            names = [m for m in self.methods if METHODS[m].family == family]
            if names:
                y, found = run(self, x, names)
                preds.append(y)
                maps.update(found)
        if "cam" in maps:
            self._check_cam(x, preds[0], maps["cam"])
        return preds[0], maps

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        """The baseline field for designs ``x`` (the smooth wall if none was given)."""
        return baseline_field(self.baseline, x)

    def record_completeness(self, residual: torch.Tensor, change: torch.Tensor) -> None:
        """Keep integrated gradients' per-design residual ``sum(map) - (f(x) - f(b))``."""
        self.last_ig_residual = residual.detach()
        self.ig_residual = max(self.ig_residual, residual.abs().max().item())
        self.ig_scale = max(self.ig_scale, change.abs().max().item())

    @property
    def ig_relative_residual(self) -> float:
        """``ig_residual`` over the largest ``|f(x) - f(b)|``."""
        return self.ig_residual / self.ig_scale if self.ig_scale > 0 else 0.0

    def _check_cam(self, x: torch.Tensor, y: torch.Tensor, cam: torch.Tensor) -> None:
        """CAM plus the zero-activation output must give the prediction; record the residual."""
        with zeroed_layer(self.model, self.layer), torch.no_grad():
            offset = self.model(x)
        residual = (y - offset - cam.sum(dim=(1, 2))).abs().max().item()
        self.cam_residual = max(self.cam_residual, residual)
        self.cam_scale = max(self.cam_scale, (y - offset).abs().max().item())

    @property
    def cam_relative_residual(self) -> float:
        """``cam_residual`` over the largest ``|prediction - bias|``."""
        return self.cam_residual / self.cam_scale if self.cam_scale > 0 else 0.0

    # -- one batch as tensors, then as a Dataset -------------------------------------------

    def _finish(self, m: torch.Tensor) -> torch.Tensor:
        if self.relu:
            m = m.clamp_min(0)
        if self.normalise:
            peak = m.abs().amax(dim=(1, 2), keepdim=True)
            m = m / torch.where(peak > 0, peak, torch.ones_like(peak))
        return m

    def units(self, method: str) -> str:
        return "1" if self.normalise else METHODS[method].units

    def maps(self, roughness: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, Maps]:
        """Prediction ``(batch,)`` and each method's native map, relu/normalise applied.

        The tensor-level entry point (the evaluation uses it); :meth:`batch` wraps it in a
        Dataset. ``roughness`` is ``(batch, y, x)`` or ``(batch, 1, y, x)`` in delta.
        """
        x = roughness_batch(roughness, channel_optional=True).to(self.device, torch.float32)
        if tuple(x.shape[-2:]) != self.shape:
            raise InputError(f"roughness grid {tuple(x.shape[-2:])} differs from {self.shape}")
        y, raw = self.raw_maps(x)
        return y, {m: self._finish(raw[m]) for m in self.methods}

    def on_input_grid(self, maps: Maps, mode: str) -> torch.Tensor:
        """Native maps brought to the input grid by ``mode``, stacked ``(batch, method, y, x)``."""
        return torch.stack([upsample(maps[m], self.shape, mode) for m in self.methods], 1)

    def batch(self, roughness: torch.Tensor | np.ndarray, first_sample: int = 0) -> xr.Dataset:
        """Maps of one batch of designs ``(batch, y, x)`` or ``(batch, 1, y, x)`` in delta."""
        y, maps = self.maps(roughness)
        full = torch.stack([self.on_input_grid(maps, mode) for mode in self.interpolation], 2)
        samples = np.arange(first_sample, first_sample + len(y))
        ds = xr.Dataset(
            {
                "prediction": ("sample", y.cpu().numpy()),
                "attribution": (("sample", METHOD_DIM, "interpolation", "y", "x"), _np(full)),
            },
            coords={
                "sample": samples,
                METHOD_DIM: self.methods,
                "interpolation": self.interpolation,
                "method_units": (METHOD_DIM, [self.units(m) for m in self.methods]),
            },
        )
        if "integrated-gradients" in maps and self.last_ig_residual is not None:
            ds["ig_residual"] = ("sample", self.last_ig_residual.cpu().numpy())
            ds["ig_residual"].attrs.update(
                units="U_e/delta",
                long_name="integrated gradients: sum(map) - (f(x) - f(baseline))",
            )
            # what the map leaves unattributed: the prediction of the reference field itself
            ds["ig_reference_prediction"] = ("sample", self.last_ig_reference.cpu().numpy())
            ds["ig_reference_prediction"].attrs.update(
                units="U_e/delta",
                long_name="prediction for the baseline field; the map sums to prediction minus "
                "this (plus ig_residual)",
            )
        for resolution, var, dims in _NATIVE:
            names = [m for m in self.methods if METHODS[m].resolution == resolution]
            if names:
                ds[var] = (dims, _np(torch.stack([maps[m] for m in names], 1)))
                ds = ds.assign_coords({dims[1]: names})
        _describe(ds, {m: self.units(m) for m in self.methods})
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
            out["polycam_shape"] = f"{self.pyramid_shape[0]}x{self.pyramid_shape[1]}"
        if any(METHODS[m].needs_baseline for m in self.methods):
            out["baseline"] = _baseline_name(self.baseline)
        if "integrated-gradients" in self.methods:
            out["ig_steps"] = self.ig_steps
            out["ig_residual"] = self.ig_residual
            out["ig_relative_residual"] = self.ig_relative_residual
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


def _baseline_name(baseline: str | torch.Tensor | None) -> str:
    if baseline is None or baseline == "smooth-wall":
        return "smooth wall (h = 0)"
    return baseline if isinstance(baseline, str) else "user field"


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32, copy=False)


# resolution -> the variable holding those methods' native maps, and its dimensions
_NATIVE = (
    ("layer", "attribution_native", ("sample", "layer_method", "y_layer", "x_layer")),
    ("pyramid", "attribution_polycam", ("sample", "polycam_method", "y_polycam", "x_polycam")),
)


# units of a variable whose methods differ in units; each method's are in units_by_method
MIXED_UNITS = "mixed: see units_by_method"
_COORDS = {  # name -> (long_name, units)
    "sample": ("sample index", "1"),
    METHOD_DIM: ("attribution method", "1"),
    "interpolation": ("interpolation onto the input grid", "1"),
    "method_units": ("units of each method's maps", "1"),
    "layer_method": ("attribution method with a map on the explained layer's grid", "1"),
    "polycam_method": ("Poly-CAM variant", "1"),
}
_MAPS = {  # variable -> (long_name, its method dimension)
    "attribution": ("attribution on the input grid", METHOD_DIM),
    "attribution_native": ("attribution on the explained layer's grid", "layer_method"),
    "attribution_polycam": ("Poly-CAM attribution on its finest layer's grid", "polycam_method"),
}


def units_attrs(units: dict[str, str]) -> dict[str, str]:
    """The ``units`` attribute of a map variable whose methods have ``units`` (method -> units).

    CF wants one units string per variable: the methods' common units where they share one,
    else :data:`MIXED_UNITS` with a ``units_by_method`` attribute, ``"cam: U_e/delta per layer
    cell; gradient: U_e/delta per delta of height"``.
    """
    distinct = set(units.values())
    if len(distinct) == 1:
        return {"units": distinct.pop()}
    by_method = "; ".join(f"{m}: {u}" for m, u in units.items())
    return {"units": MIXED_UNITS, "units_by_method": by_method}


def _describe(ds: xr.Dataset, units: dict[str, str]) -> None:
    """``long_name`` and ``units`` on every variable and coordinate of one batch."""
    ds["prediction"].attrs.update(units="U_e/delta", long_name="surrogate max vorticity")
    for name, (long_name, dim) in _MAPS.items():
        if name in ds:
            methods = [str(m) for m in ds[dim].values]
            ds[name].attrs.update(
                long_name=long_name, **units_attrs({m: units[m] for m in methods})
            )
    for name, (long_name, unit) in _COORDS.items():
        if name in ds.coords:
            ds[name].attrs.update(long_name=long_name, units=unit)


def explain(
    model: nn.Module,
    roughness: np.ndarray | torch.Tensor,
    methods: Sequence[str] | None = None,
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
        methods: Names from :data:`explain.catalogue.METHODS`; default
            :func:`default_methods`.
        layer: Module name to explain; default the last module with a spatial output.
        interpolation: Modes of :func:`explain.interpolation.upsample`.
        batch_size: Designs per pass.
        relu: Keep only positive attributions.
        normalise: Scale each map to a largest magnitude of 1.
        progress: Show a progress bar.
        **options: Further :class:`Explainer` arguments (``baseline``, ``polycam_layers``,
            ``chunk``, ``device``).

    Returns:
        Dataset with ``prediction(sample)``,
        ``attribution(sample, attribution_method, interpolation, y, x)``, and the native maps
        ``attribution_native(sample, layer_method, y_layer, x_layer)`` (layer methods) and
        ``attribution_polycam`` (Poly-CAM); select with
        ``ds.attribution.sel(attribution_method="cam")``. Maps are signed unless the method
        rectifies. ``method_units`` gives each method's units; a map variable's ``units``
        attribute is the methods' common units, or :data:`MIXED_UNITS` with a
        ``units_by_method`` attribute where they differ (:func:`units_attrs`). Every variable
        and coordinate has ``units`` and ``long_name``; ``y``/``x`` carry no positions here
        (:func:`explain.io.with_positions` adds them in delta).

    Raises:
        InputError: Unknown method, layer or interpolation; a layer without spatial output;
            'cam' where the layer does not feed a pooled linear head.
    """
    x = roughness_batch(roughness, channel_optional=True).to(torch.float32)
    explainer = Explainer(
        model, tuple(x.shape[-2:]), methods, layer, interpolation, relu, normalise, **options
    )
    parts = list(explainer.batches(x, batch_size, progress))
    explainer.check_cam()
    ds = xr.concat(parts, dim="sample", data_vars="minimal", coords="minimal", compat="override")
    ds.attrs.update(explainer.attrs())
    return ds
