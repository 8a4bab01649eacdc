"""Agreement of every map in a ``surrogate explain`` file with a synthetic campaign's exact truth.

Prints, per method, the mean per-design Spearman and Pearson correlation with ``contribution``
over the designs whose peak margin is at least 5%, the surrogate's R² on those designs and,
when the file has integrated gradients, its completeness residual relative to f(x) - f(b).

    surrogate explain --checkpoint CKPT --data CAMPAIGN --out maps.nc --samples test \\
        --methods gradient gradient-x-input integrated-gradients hirescam --interpolation none
    python benchmarks/agreement.py maps.nc CAMPAIGN
"""

from __future__ import annotations

import sys

import numpy as np
import xarray as xr
from scipy.stats import pearsonr, spearmanr

MIN_MARGIN = 0.05


def main(maps_path: str, campaign_path: str) -> None:
    with (
        xr.open_dataset(maps_path, engine="h5netcdf") as maps,
        xr.open_dataset(campaign_path, engine="h5netcdf") as campaign,
    ):
        ids = maps["sample"].values
        truth = campaign["contribution"].values[ids]
        kept = np.nonzero(campaign["peak_margin"].values[ids] >= MIN_MARGIN)[0]
        pred, sim = maps["prediction"].values, maps["simulated"].values
        r2 = 1 - ((pred - sim) ** 2).sum() / ((sim - sim.mean()) ** 2).sum()
        print(f"{len(ids)} designs, {len(kept)} with margin >= {MIN_MARGIN}; R2 {r2:.4f}")
        if "ig_residual" in maps:
            residual = maps["ig_residual"].values
            ig = (
                maps["attribution"]
                .sel(attribution_method="integrated-gradients")
                .isel(interpolation=0)
            )
            relative = np.abs(residual / (ig.values.sum(axis=(1, 2)) - residual))
            print(f"IG completeness: median {np.median(relative):.1e}, max {relative.max():.1e}")
        for method in maps["attribution_method"].values:
            a = maps["attribution"].sel(attribution_method=method).isel(interpolation=-1).values
            rho = [spearmanr(a[i].ravel(), truth[i].ravel())[0] for i in kept]
            r = [pearsonr(a[i].ravel(), truth[i].ravel())[0] for i in kept]
            print(f"{method:22s} Spearman {np.nanmean(rho):.3f}  Pearson {np.nanmean(r):.3f}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
