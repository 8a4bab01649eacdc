"""How far to trust one prediction: a conformal interval, the error near it, the training domain.

Three independent answers for a design review, numpy first (torch only runs a model):

- :func:`conformal_halfwidth` / :func:`conformal_interval`: a split-conformal interval from the
  residuals of a calibration (validation) split, with finite-sample coverage ``>= level`` for a
  design drawn like the calibration designs;
- :func:`binned_errors` / :func:`error_near`: the test split's bias and RMSE in bins of the
  predicted value, so a review quotes the error where the prediction lies;
- :class:`DomainCheck`: whether a design looks like the training designs, by its grid, its
  spacing, six per-design statistics of the heights and, optionally, the Mahalanobis distance
  of the network's penultimate features (:func:`penultimate_features`). Each check yields a
  :class:`Finding` with a one-line message saying what was measured and by how much it is out.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from data.errors import InputError

# relative widening of each statistic's training range, on each side, as a fraction of the range
MARGIN = 0.05
# relative tolerance on the grid spacing
SPACING_TOLERANCE = 1e-3


def _finite_vector(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size == 0 or not np.isfinite(array).all():
        raise InputError(f"{name}: {array.size} values, some NaN or Inf or none; expected finite")
    return array


def _check_level(level: float, name: str = "level") -> None:
    if not 0 < level < 1:
        raise InputError(f"{name} {level} is not in (0, 1); expected e.g. 0.9")


def conformal_halfwidth(residuals: Any, level: float = 0.9) -> float:
    """Half-width ``q`` of the split-conformal interval ``prediction ± q``.

    ``q`` is the ``k``-th smallest ``|r|`` with ``k = ceil((n + 1) level)``, the finite-sample
    split-conformal quantile: for a new design exchangeable with the ``n`` calibration designs
    the interval holds the truth with probability ``>= level``. When ``k > n`` (fewer than
    ``level / (1 - level)`` calibration designs, e.g. ``n < 9`` at 0.9) no finite width has that
    guarantee and the result is ``inf``.

    Args:
        residuals: Prediction minus truth on the calibration split ``(n,)``, in U_e/delta.
        level: Nominal coverage in ``(0, 1)``.

    Raises:
        InputError: ``level`` outside ``(0, 1)``; residuals empty, NaN or Inf.
    """
    _check_level(level)
    magnitudes = np.sort(np.abs(_finite_vector(residuals, "residuals")))
    # the tolerance keeps (n + 1) * level = 9.000000000000002 at rank 9, not 10
    rank = math.ceil((magnitudes.size + 1) * level - 1e-9)
    return math.inf if rank > magnitudes.size else float(magnitudes[rank - 1])


@dataclass
class Interval:
    """A prediction with its conformal interval, in U_e/delta."""

    prediction: float
    low: float
    high: float
    level: float
    halfwidth: float
    calibration_samples: int


def conformal_interval(prediction: float, residuals: Any, level: float = 0.9) -> Interval:
    """``prediction ± conformal_halfwidth(residuals, level)`` as an :class:`Interval`."""
    q = conformal_halfwidth(residuals, level)
    n = int(np.asarray(residuals).size)
    p = float(prediction)
    return Interval(p, p - q, p + q, float(level), q, n)


def binned_errors(predicted: Any, simulated: Any, bins: int = 5) -> list[dict[str, float]]:
    """Residuals of a test split in equal-count bins of the predicted value.

    Designs are sorted by prediction and cut into ``bins`` groups of equal count (sizes differ
    by one at most). Each row: ``lo``, ``hi`` (the smallest and largest prediction in the bin),
    ``n``, ``bias`` (mean of prediction - truth), ``rmse`` and ``abs_q90`` (the 0.9 quantile of
    ``|prediction - truth|``, linear interpolation); all in U_e/delta.

    Raises:
        InputError: Lengths differ, NaN/Inf values, or fewer designs than ``bins``.
    """
    p = _finite_vector(predicted, "predicted")
    t = _finite_vector(simulated, "simulated")
    if p.size != t.size:
        raise InputError(f"predicted has {p.size} values, simulated {t.size}; expected equal")
    if not 1 <= bins <= p.size:
        raise InputError(f"bins {bins} for {p.size} designs; expected 1 <= bins <= designs")
    order = np.argsort(p, kind="stable")
    rows = []
    for group in np.array_split(order, bins):
        r = p[group] - t[group]
        rows.append(
            {
                "lo": float(p[group].min()),
                "hi": float(p[group].max()),
                "n": int(group.size),
                "bias": float(r.mean()),
                "rmse": float(np.sqrt(np.mean(r**2))),
                "abs_q90": float(np.quantile(np.abs(r), 0.9)),
            }
        )
    return rows


def error_near(table: list[dict[str, float]], prediction: float) -> dict[str, Any]:
    """The row of :func:`binned_errors` that holds ``prediction``, with ``extrapolated``.

    Bin ``i`` covers ``(hi[i-1], hi[i]]``; a prediction below the first bin's ``lo`` or above the
    last bin's ``hi`` gets the end bin, flagged ``extrapolated: True``.
    """
    if not table:
        raise InputError("error table is empty; expected the rows of binned_errors")
    p = float(prediction)
    row = next((r for r in table if p <= r["hi"]), table[-1])
    return {**row, "extrapolated": bool(p < table[0]["lo"] or p > table[-1]["hi"])}


def _last_parametrised(model: nn.Module) -> tuple[str, nn.Module]:
    found = [
        (n, m)
        for n, m in model.named_modules()
        if next(m.parameters(recurse=False), None) is not None
    ]
    if not found:
        raise InputError(f"model {type(model).__name__} has no parameters; nothing to hook")
    return found[-1]


def penultimate_features(model: nn.Module, x: Any, batch_size: int = 256) -> np.ndarray:
    """Input of the model's last submodule with parameters, flattened per design.

    The last module (in ``model.named_modules()`` order) that holds parameters of its own is
    hooked with a forward pre-hook: for :class:`~surrogate.network.RoughnessCNN` that is ``fc``
    (the pooled features), for :class:`~surrogate.transport.TransportNet` the head's last
    linear layer (or a :class:`~surrogate.transport.MonotoneHead`, which gets the wake peaks).
    Runs in eval mode under ``torch.no_grad`` on the model's device; the hook is removed and
    the train/eval mode restored even on error.

    Args:
        model: E.g. a :class:`~surrogate.normaliser.PhysicalSurrogate`.
        x: Heights ``(batch, 1, y, x)`` or ``(batch, y, x)`` in delta (tensor or array).
        batch_size: Designs per forward pass.

    Returns:
        ``(batch, d)`` float64 features.
    """
    if batch_size < 1:
        raise InputError(f"batch_size {batch_size}; expected >= 1")
    name, module = _last_parametrised(model)
    parameter = next(model.parameters())
    heights = torch.as_tensor(x)
    heights = heights.unsqueeze(1) if heights.ndim == 3 else heights
    captured: list[torch.Tensor] = []
    handle = module.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    was_training = model.training
    parts = []
    try:
        model.eval()
        with torch.no_grad():
            for batch in heights.split(batch_size):
                captured.clear()
                model(batch.to(device=parameter.device, dtype=parameter.dtype))
                if len(captured) != 1:
                    raise InputError(f"module '{name}' ran {len(captured)} times; expected once")
                parts.append(captured[0].flatten(1).double().cpu().numpy())
    finally:
        handle.remove()
        model.train(was_training)
    return np.concatenate(parts) if parts else np.zeros((0, 0))


def _fine_scale_fraction(h: np.ndarray) -> np.ndarray:
    """Fraction of the variance at wavelengths under 4 cells along y or x (|k| > Nyquist / 2)."""
    power = np.abs(np.fft.fft2(h - h.mean(axis=(-2, -1), keepdims=True))) ** 2
    ky = np.abs(np.fft.fftfreq(h.shape[-2]))[:, None]
    kx = np.abs(np.fft.fftfreq(h.shape[-1]))[None, :]
    total = power.sum(axis=(-2, -1))
    fine = (power * ((ky > 0.25) | (kx > 0.25))).sum(axis=(-2, -1))
    return np.where(total > 0, fine / np.where(total > 0, total, 1.0), 0.0)


def _max_slope(h: np.ndarray, dy: float, dx: float) -> np.ndarray:
    gy, gx = np.gradient(h, dy, dx, axis=(-2, -1))
    return np.hypot(gy, gx).max(axis=(-2, -1))


# name -> (unit, statistic of heights (n, y, x) with spacings dy, dx -> (n,))
STATISTICS: dict[str, tuple[str, Callable[[np.ndarray, float, float], np.ndarray]]] = {
    "max height": (" delta", lambda h, dy, dx: h.max(axis=(-2, -1))),
    "min height": (" delta", lambda h, dy, dx: h.min(axis=(-2, -1))),
    "rms height": (" delta", lambda h, dy, dx: np.sqrt(np.mean(h**2, axis=(-2, -1)))),
    "mean height": (" delta", lambda h, dy, dx: h.mean(axis=(-2, -1))),
    "max slope": ("", _max_slope),
    "fine-scale fraction": ("", lambda h, dy, dx: _fine_scale_fraction(h)),
}


@dataclass
class Finding:
    """One check of one design: the measured ``value``, the allowed ``[low, high]``, a verdict."""

    check: str
    value: float
    low: float
    high: float
    passed: bool
    message: str


def ledoit_wolf(features: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit-Wolf shrunk covariance ``(1 - a) S + a (tr S / d) I`` and the weight ``a``.

    ``S`` is the maximum-likelihood covariance (divided by ``n``); ``a = min(b2, d2) / d2`` with
    ``d2 = ||S - mu I||_F^2`` and ``b2 = sum_k ||x_k x_k^T - S||_F^2 / n^2`` (Ledoit and Wolf
    2004), the weight that minimises the expected Frobenius error of the estimate.
    """
    x = features - features.mean(axis=0)
    n, d = x.shape
    s = x.T @ x / n
    mu = np.trace(s) / d
    d2 = np.sum((s - mu * np.eye(d)) ** 2)
    x2 = x**2
    b2 = (np.sum(x2.T @ x2) / n - np.sum(s**2)) / n
    a = 0.0 if d2 <= 0 else float(min(b2, d2) / d2)
    return (1 - a) * s + a * mu * np.eye(d), a


def _two_d(features: Any, name: str, width: int | None = None) -> np.ndarray:
    f = np.asarray(features, dtype=np.float64)
    f = f[None] if f.ndim == 1 else f
    if f.ndim != 2 or not np.isfinite(f).all() or (width is not None and f.shape[1] != width):
        want = f"(designs, {width})" if width else "(designs, d)"
        raise InputError(f"{name} has shape {f.shape} or NaN/Inf; expected finite {want}")
    return f


class DomainCheck:
    """Whether designs lie inside the training domain, check by check.

    Rules (documented for the review):

    - grid: the same cells along y and x as the training designs;
    - spacing: ``dy``, ``dx`` within a relative :data:`SPACING_TOLERANCE` of the training ones;
    - statistics (:data:`STATISTICS`): max, min, rms (about ``h = 0``, the smooth wall) and mean
      height, the largest ``|grad h|`` (``np.gradient`` with the spacings) and the fine-scale
      fraction of the height variance (wavelengths under 4 cells: a checkerboard is all of it).
      Allowed: the training designs' ``[min, max]`` widened on each side by :data:`MARGIN`
      (5%) of that range;
    - feature distance (optional): Mahalanobis distance of the penultimate features from the
      training mean, under the Ledoit-Wolf shrunk training covariance (:func:`ledoit_wolf`);
      allowed below the ``quantile`` of the calibration (validation) designs' distances, or of
      the training designs' own if none are given (in-sample, so tighter).

    A design passes when all its findings pass. A checker fitted with features fails the
    feature finding of a design checked without them (nothing was measured).
    """

    def __init__(self) -> None:
        self.grid: tuple[int, int] | None = None
        self.spacing: tuple[float, float] = (0.0, 0.0)
        self.ranges: dict[str, tuple[float, float]] = {}  # training min, max
        self.margin = MARGIN
        self.features: dict[str, Any] | None = None

    def fit(
        self,
        heights: Any,
        dy: float,
        dx: float,
        features: Any | None = None,
        calibration_features: Any | None = None,
        quantile: float = 0.999,
    ) -> DomainCheck:
        """Learn the domain from the training designs ``heights (n, y, x)`` in delta.

        Args:
            heights: Training heights ``(n, y, x)``, ``n >= 2``.
            dy, dx: Cell spacings in delta.
            features: Penultimate features of the training designs ``(n, d)``.
            calibration_features: Those of held-out (validation) designs ``(m, d)``, which set
                the distance threshold.
            quantile: Quantile of the calibration distances taken as the threshold.
        """
        h = np.asarray(heights, dtype=np.float64)
        if h.ndim != 3 or h.shape[0] < 2 or not np.isfinite(h).all():
            raise InputError(
                f"heights have shape {h.shape} or NaN/Inf; expected finite (n>=2, y, x)"
            )
        self._check_spacing(dy, dx)
        self.grid, self.spacing = (h.shape[1], h.shape[2]), (float(dy), float(dx))
        for name, (_, statistic) in STATISTICS.items():
            values = statistic(h, dy, dx)
            self.ranges[name] = (float(values.min()), float(values.max()))
        self.features = None
        if features is not None:
            self._fit_features(
                _two_d(features, "features"), h.shape[0], calibration_features, quantile
            )
        return self

    def _fit_features(self, f: np.ndarray, n: int, calibration: Any, quantile: float) -> None:
        _check_level(quantile, "quantile")
        if f.shape[0] != n:
            raise InputError(f"features have {f.shape[0]} rows for {n} designs; expected equal")
        covariance, shrinkage = ledoit_wolf(f)
        # a feature constant in training (a dead unit) leaves only the shrinkage on its diagonal
        covariance += 1e-9 * max(np.trace(covariance) / f.shape[1], 1e-300) * np.eye(f.shape[1])
        self.features = {
            "mean": f.mean(axis=0).tolist(),
            "covariance": covariance.tolist(),
            "shrinkage": shrinkage,
            "quantile": float(quantile),
            "calibration": "training" if calibration is None else "validation",
        }
        reference = f if calibration is None else _two_d(calibration, "calibration", f.shape[1])
        self.features["threshold"] = float(np.quantile(self.distance(reference), quantile))

    def distance(self, features: Any) -> np.ndarray:
        """Mahalanobis distances ``(designs,)`` of features ``(designs, d)`` from the training."""
        if self.features is None:
            raise InputError("this DomainCheck was fitted without features")
        mean = np.asarray(self.features["mean"])
        f = _two_d(features, "features", mean.size) - mean
        chol = np.linalg.cholesky(np.asarray(self.features["covariance"]))
        return np.linalg.norm(np.linalg.solve(chol, f.T), axis=0)

    @staticmethod
    def _check_spacing(dy: float, dx: float) -> None:
        if not (np.isfinite([dy, dx]).all() and dy > 0 and dx > 0):
            raise InputError(f"spacing dy={dy}, dx={dx}; expected positive cell sizes in delta")

    def check(
        self, heights: Any, dy: float, dx: float, features: Any = None
    ) -> list[list[Finding]]:
        """Findings per design for heights ``(y, x)`` or ``(n, y, x)`` in delta.

        Args:
            heights: One design or several, in delta.
            dy, dx: Their cell spacings in delta.
            features: Their penultimate features ``(d,)`` or ``(n, d)``; may be None (e.g. for
                a grid the network cannot take), which fails the feature finding if fitted.
        """
        if self.grid is None:
            raise InputError("DomainCheck is not fitted; call fit() or from_dict() first")
        h = np.asarray(heights, dtype=np.float64)
        h = h[None] if h.ndim == 2 else h
        if h.ndim != 3 or not np.isfinite(h).all():
            raise InputError(f"heights have shape {h.shape} or NaN/Inf; expected finite (n, y, x)")
        self._check_spacing(dy, dx)
        common = self._grid_findings(h.shape[1:]) + self._spacing_findings(dy, dx)
        rows = [[replace(f) for f in common] for _ in range(h.shape[0])]
        for name, (unit, statistic) in STATISTICS.items():
            for row, value in zip(rows, statistic(h, dy, dx), strict=True):
                row.append(self._range_finding(name, float(value), unit))
        if self.features is not None:
            distances = [math.nan] * h.shape[0] if features is None else self.distance(features)
            if len(distances) != h.shape[0]:
                raise InputError(f"{len(distances)} feature rows for {h.shape[0]} designs")
            for row, value in zip(rows, distances, strict=True):
                row.append(self._feature_finding(float(value)))
        return rows

    def _grid_findings(self, shape: tuple[int, ...]) -> list[Finding]:
        assert self.grid is not None
        findings = []
        for axis, n, cells in zip("yx", shape, self.grid, strict=True):
            ok, trained = n == cells, float(cells)
            verdict = "as in training" if ok else f"the training grid is {self.grid} (y, x)"
            message = f"grid {axis} {n} cells, {verdict}"
            findings.append(Finding(f"grid {axis}", float(n), trained, trained, ok, message))
        return findings

    def _spacing_findings(self, dy: float, dx: float) -> list[Finding]:
        findings = []
        for axis, value, trained in zip("yx", (dy, dx), self.spacing, strict=True):
            low, high = trained * (1 - SPACING_TOLERANCE), trained * (1 + SPACING_TOLERANCE)
            ok = low <= value <= high
            verdict = "as in training" if ok else f"is {value / trained:.3g}x the training spacing"
            message = f"spacing {axis} {value:g} delta {verdict} ({trained:g} delta)"
            findings.append(Finding(f"spacing {axis}", float(value), low, high, ok, message))
        return findings

    def _range_finding(self, name: str, value: float, unit: str) -> Finding:
        lo, hi = self.ranges[name]
        low, high = lo - self.margin * (hi - lo), hi + self.margin * (hi - lo)
        passed = low <= value <= high
        if passed:
            where = f"within the training range {lo:.3g} .. {hi:.3g}{unit}"
        elif value > high:  # a ratio where both are positive, else the excess
            by = f"{value / hi:.3g}x" if hi > 0 else f"{value - hi:.3g}{unit} above"
            where = f"is {by} the training maximum {hi:.3g}{unit}"
        else:
            by = f"{value / lo:.3g}x" if lo < 0 and value < 0 else f"{lo - value:.3g}{unit} below"
            where = f"is {by} the training minimum {lo:.3g}{unit}"
        allowed = "" if passed else f" (allowed {low:.3g} .. {high:.3g})"
        message = f"{name} {value:.3g}{unit} {where}{allowed}"
        return Finding(name, value, low, high, passed, message)

    def _feature_finding(self, value: float) -> Finding:
        assert self.features is not None
        threshold, q = self.features["threshold"], self.features["quantile"]
        rule = f"the {q:g} quantile of the {self.features['calibration']} designs' distances"
        if math.isnan(value):
            message = "feature distance not measured: no features given for this design"
        else:
            ratio = "below" if value <= threshold else f"{value / threshold:.3g}x"
            message = f"feature distance {value:.3g} is {ratio} the threshold {threshold:.3g}"
        message += f" ({rule})"
        return Finding("feature distance", value, 0.0, threshold, value <= threshold, message)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state (plain floats and lists)."""
        if self.grid is None:
            raise InputError("DomainCheck is not fitted; nothing to save")
        return {
            "grid": list(self.grid),
            "spacing": list(self.spacing),
            "margin": self.margin,
            "ranges": {k: list(v) for k, v in self.ranges.items()},
            "features": None if self.features is None else dict(self.features),
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> DomainCheck:
        """Rebuild a checker saved with :meth:`to_dict`."""
        missing = sorted({"grid", "spacing", "ranges", "features"} - set(state))
        if missing or set(state["ranges"]) != set(STATISTICS):
            raise InputError(f"domain state lacks {missing or 'statistics'}; expected to_dict()")
        check = cls()
        check.grid = (int(state["grid"][0]), int(state["grid"][1]))
        check.spacing = (float(state["spacing"][0]), float(state["spacing"][1]))
        check.ranges = {k: (float(v[0]), float(v[1])) for k, v in state["ranges"].items()}
        check.margin = float(state.get("margin", MARGIN))
        check.features = None if state["features"] is None else dict(state["features"])
        return check


def in_domain(findings: list[Finding]) -> bool:
    """A design is inside the training domain when every finding passes."""
    return all(f.passed for f in findings)
