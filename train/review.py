"""What a design review needs from a trained surrogate, computed for one design at a time.

:class:`Reviewer` holds what does not depend on the design: the ensemble, the calibration of
its interval (split conformal on the checkpoint's validation split), the test error binned by
predicted value, the domain check fitted on the training split, the attribution method and
the reduced-order physics of a synthetic campaign. :meth:`Reviewer.review` then gives one
design's prediction with its interval, domain findings, regions of the map, what-if edits
(re-simulated where the physics is known), a finite-difference check of the gradient and
whether deleting cells in the map's order lowers the output faster than a random order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from explain.catalogue import METHODS
from explain.regions import Region, find_regions
from explain.whatif import finite_difference_check, predict, smooth_region, what_if_designs
from surrogate.validity import DomainCheck, binned_errors, conformal_halfwidth, error_near

CALIBRATION_DESIGNS = 2000  # training designs the domain check is fitted on, at most
CAM_FAMILY = ("cam", "hirescam", "layercam")
TRUST_STEPS, TRUST_PERMUTATIONS = 20, 10


class Ensemble(nn.Module):
    """The mean of several surrogates' predictions (one member: that member)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(dim=0)

    def each(self, heights: np.ndarray) -> np.ndarray:
        """Every member's prediction ``(members, batch)`` for heights ``(batch, y, x)``."""
        return np.stack([predict(m, heights) for m in self.members])


@dataclass
class Calibration:
    """The surrogate's measured error: conformal half-width and the binned test error."""

    level: float
    halfwidth: float
    calibration_samples: int
    binned: list[dict]

    def as_dict(self, members: int) -> dict:
        return {
            "level": self.level, "halfwidth": self.halfwidth, "members": members,
            "calibration_samples": self.calibration_samples, "binned_errors": self.binned,
        }  # fmt: skip


def calibrate(ensemble: Ensemble, campaign, splits: dict, level: float) -> Calibration:
    """Conformal half-width from the validation split's residuals, binned errors from the
    test split's (both read from the training campaign, batch by batch)."""
    residuals = {}
    for name in ("val", "test"):
        ids = np.asarray(sorted(splits.get(name, [])), dtype=np.int64)
        if ids.size == 0:
            residuals[name] = (np.zeros(0), np.zeros(0))
            continue
        predicted = np.concatenate(
            [predict(ensemble, campaign["roughness"][ids[i : i + 512]].values)
             for i in range(0, len(ids), 512)]
        )  # fmt: skip
        residuals[name] = (predicted, campaign["max_vorticity"][ids].values.astype(np.float64))
    val_pred, val_true = residuals["val"]
    test_pred, test_true = residuals["test"]
    halfwidth = conformal_halfwidth(val_pred - val_true, level)
    binned = binned_errors(test_pred, test_true) if len(test_pred) >= 5 else []
    return Calibration(level, halfwidth, len(val_pred), binned)


def fit_domain(model: nn.Module, campaign, splits: dict, seed: int) -> DomainCheck:
    """The domain check fitted on (at most :data:`CALIBRATION_DESIGNS`) training designs,
    its feature threshold calibrated on the validation split."""
    from surrogate.validity import penultimate_features

    rng = np.random.default_rng(seed)
    train = np.asarray(sorted(splits["train"]), dtype=np.int64)
    if len(train) > CALIBRATION_DESIGNS:
        train = np.sort(rng.choice(train, CALIBRATION_DESIGNS, replace=False))
    val = np.asarray(sorted(splits.get("val", [])), dtype=np.int64)[:CALIBRATION_DESIGNS]
    heights = campaign["roughness"][train].values
    dy, dx = spacing(campaign)
    features = penultimate_features(model, heights[:, None])
    calibration = (
        penultimate_features(model, campaign["roughness"][val].values[:, None])
        if len(val) else None
    )  # fmt: skip
    return DomainCheck().fit(heights, dy, dx, features, calibration)


def spacing(campaign) -> tuple[float, float]:
    """Cell spacings ``(dy, dx)`` in delta from the campaign's coordinates (1 without them)."""
    out = []
    for dim in ("y", "x"):
        values = campaign[dim].values if dim in campaign.coords else np.arange(2.0)
        out.append(float(values[1] - values[0]) if len(values) > 1 else 1.0)
    return out[0], out[1]


@dataclass
class Design:
    """One design under review: heights ``(y, x)`` in delta and what is known about it."""

    label: str
    heights: np.ndarray
    ys: np.ndarray
    xs: np.ndarray
    sample: int | None = None
    sample_id: int | None = None
    simulated: float | None = None


@dataclass
class Result:
    """One design's review: the ``review.json`` entry and the arrays its figures need."""

    entry: dict
    map: np.ndarray
    masks: list[np.ndarray]
    cam_pairs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


class Reviewer:
    """Reviews designs against one trained surrogate (or an ensemble of them)."""

    def __init__(
        self,
        ensemble: Ensemble,
        calibration: Calibration,
        domain: DomainCheck,
        method: str,
        physics=None,
        seed: int = 0,
    ) -> None:
        self.ensemble, self.calibration, self.domain = ensemble, calibration, domain
        self.method, self.physics, self.seed = method, physics, seed
        self.model = ensemble.members[0]  # maps are the first member's (stated in the report)

    def review(self, design: Design) -> Result:
        from explain.api import explain
        from surrogate.validity import Finding, in_domain, penultimate_features

        h = np.asarray(design.heights, dtype=np.float64)
        shape = h.shape
        members = self.ensemble.each(h[None])[:, 0]
        prediction = float(members.mean())
        q = self.calibration.halfwidth
        dy = float(design.ys[1] - design.ys[0]) if len(design.ys) > 1 else 1.0
        dx = float(design.xs[1] - design.xs[0]) if len(design.xs) > 1 else 1.0
        features = penultimate_features(self.model, h[None, None])
        findings: list[Finding] = self.domain.check(h, dy, dx, features)[0]
        methods = [self.method, *self._cam_family(shape, exclude=self.method)]
        maps = explain(self.model, h[None].astype(np.float32), methods=methods)
        chosen = self._input_grid_map(maps, self.method)
        regions = find_regions(chosen, h, design.ys, design.xs)
        entry = {
            "label": design.label, "sample": design.sample, "sample_id": design.sample_id,
            "prediction": prediction,
            "interval": [prediction - q, prediction + q],
            "members": [float(m) for m in members],
            "spread": float(members.std(ddof=1)) if len(members) > 1 else None,
            "simulated": design.simulated,
            "error_near": error_near(self.calibration.binned, prediction)
            if self.calibration.binned else None,
            "domain": {
                "in_domain": in_domain(findings),
                "findings": [vars(f) | {"passed": bool(f.passed)} for f in findings],
            },
            "regions": [r.row() for r in regions],
            "fd_check": self._fd_check(h, regions),
        }  # fmt: skip
        entry["what_ifs"], entry["trust"] = self._what_ifs(h, regions)
        if entry["trust"] is not None:
            entry["trust"].update(self._deletion(h, chosen))
        pairs = {
            m: {mode: self._grid_map(maps, m, mode) for mode in ("none", "bilinear")}
            for m in methods[1:]
        }
        return Result(entry, chosen, [r.mask for r in regions], pairs)

    # -- pieces ------------------------------------------------------------------------------

    def _cam_family(self, shape: tuple[int, int], exclude: str) -> list[str]:
        """CAM, HiResCAM, LayerCAM where the default layer lies on the roughness grid."""
        from explain.api import cam_applies
        from explain.layers import candidate_layers, default_layer

        layer = default_layer(self.model, shape)
        info = {i.name: i for i in candidate_layers(self.model, shape)}.get(layer)
        if info is None or not info.on_grid(shape):
            return []
        family = [m for m in CAM_FAMILY if m != exclude]
        if "cam" in family and not cam_applies(self.model, shape, layer):
            family.remove("cam")
        return family

    @staticmethod
    def _grid_map(maps, method: str, mode: str) -> np.ndarray:
        return maps["attribution"].sel(attribution_method=method, interpolation=mode).values[0]

    def _input_grid_map(self, maps, method: str) -> np.ndarray:
        """The map on the roughness grid: as computed at input resolution, else bilinear."""
        mode = "none" if METHODS[method].resolution == "input" else "bilinear"
        return self._grid_map(maps, method, mode).astype(np.float64)

    def _what_ifs(self, h: np.ndarray, regions: list[Region]) -> tuple[list[dict], dict | None]:
        """Each region smoothed (to the wall, to the blurred design) beside a random region of
        its shape, predicted and, where the physics is known, re-simulated; and the trust
        check: the top regions smoothed together, one more at a time, against as many random
        regions, so that the map's order should lower the prediction faster."""
        rows, designs, masks = what_if_designs(h, regions, np.random.default_rng(self.seed))
        if not rows:
            return [], None
        ranked = [m for r, m in zip(rows, masks, strict=True) if r["edit"] == "region"
                  and r["to"] == "wall"]  # fmt: skip
        random = [m for r, m in zip(rows, masks, strict=True) if r["edit"] == "random"]
        union = [np.logical_or.reduce(ms[: k + 1]) for ms in (ranked, random)
                 for k in range(len(ranked))]  # fmt: skip
        together = np.stack([smooth_region(h, m, "wall") for m in union])
        y = predict(self.ensemble, np.concatenate([designs, together]))
        truth = self._simulate(designs)
        for i, row in enumerate(rows, start=1):
            row.update(before=float(y[0]), after=float(y[i]), change=float(y[i] - y[0]))
            row["true_change"] = None if truth is None else float(truth[i] - truth[0])
        k = len(ranked)
        ours, theirs = y[len(designs) :][:k] - y[0], y[len(designs) :][k:] - y[0]
        trust = {
            "removed_regions": k,
            "change_map_order": [float(c) for c in ours],
            "change_random_order": [float(c) for c in theirs],
            # the map's regions should lower the prediction more, summed over the steps
            "faster_than_random": bool(ours.sum() < theirs.sum()),
        }
        return rows, trust

    def _simulate(self, designs: np.ndarray) -> np.ndarray | None:
        """Re-simulated max vorticity of each design, where the physics is known."""
        if self.physics is None or designs.shape[1:] != (self.physics.params.size,) * 2:
            return None
        return np.asarray(self.physics.evaluate(designs).max_vorticity, dtype=np.float64)

    def _fd_check(self, h: np.ndarray, regions: list[Region]) -> dict | None:
        """The gradient map against a central difference along the top region."""
        from explain.api import explain

        if not regions:
            return None
        maps = explain(self.ensemble, h[None].astype(np.float32), methods=["gradient"])
        gradient = maps["attribution"].sel(attribution_method="gradient").values[0, 0]
        check = finite_difference_check(self.ensemble, h, gradient, regions[0].mask)
        return {k: float(v) for k, v in check.items()}

    def _deletion(self, h: np.ndarray, chosen: np.ndarray) -> dict:
        """Cell-by-cell deletion to the smooth wall in the map's order against random orders
        (the evaluation's deletion AUC, lower = faster). Abrupt deletion creates height steps,
        which are vorticity sources themselves, so this can rise where the tapered region
        edits of :meth:`_what_ifs` fall; both are reported."""
        from explain.evaluation.faithfulness import deletion_insertion, random_reference

        x = torch.as_tensor(h, dtype=torch.float32)[None, None]
        wall = torch.zeros_like(x)
        gen = torch.Generator().manual_seed(self.seed)
        curves = deletion_insertion(
            self.model, x, torch.as_tensor(chosen, dtype=torch.float32)[None], wall,
            steps=TRUST_STEPS, generator=gen,
        )  # fmt: skip
        random = random_reference(
            self.model, x, wall, steps=TRUST_STEPS, permutations=TRUST_PERMUTATIONS, generator=gen
        )
        return {
            "deletion_auc_map": float(curves.deletion_auc[0]),
            "deletion_auc_random": float(random.deletion_auc_mean[0]),
        }
