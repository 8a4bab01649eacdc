"""Re-apply the sanity pass rule and the recommendation to a finished ``surrogate evaluate`` run.

Reads the per-design cascade similarities stored in ``scores.nc`` and the table in
``summary.json``, recomputes the cascade columns with :meth:`RandomisationResult.over_steps`
(the current rule: steps at one-number-per-design layers left out, found on the run's
checkpoint for runs that predate it) and the recommendation, and rewrites ``scores.md`` and
``summary.json``.
No map is recomputed.

    python benchmarks/rescore_eval.py runs/eval-default
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
import xarray as xr

from explain.evaluation import table as keys
from explain.evaluation.recommend import recommend
from explain.evaluation.report import markdown_table
from explain.evaluation.sanity import MEASURES, RandomisationResult, passes, scalar_readouts
from surrogate import load_model


def _scale_only(settings: dict, steps: tuple[str, ...]) -> tuple[str, ...]:
    """The cascade's one-number-per-design layers, found on the run's checkpoint."""
    with xr.open_dataset(settings["campaign"]) as campaign:
        x = torch.as_tensor(campaign["roughness"].values[:2], dtype=torch.float32)[:, None]
    return scalar_readouts(load_model(Path(settings["checkpoint"])), x, steps)


def main() -> None:
    folder = Path(sys.argv[1])
    summary = json.loads((folder / "summary.json").read_text())
    table, settings = summary["table"], summary["settings"]
    with xr.open_dataset(folder / "scores.nc", engine="h5netcdf") as ds:
        sim = ds["cascade_similarity"].load()
    values = {
        str(m): {k: sim.sel(attribution_method=m, measure=k).values.astype(float) for k in MEASURES}
        for m in sim["attribution_method"].values
    }
    steps = tuple(str(s) for s in sim["cascade_step"].values[1:])
    if "cascade_scale_only" not in settings:  # a run from before the rule had them
        settings["cascade_scale_only"] = list(_scale_only(settings, steps))
    scale_only = tuple(settings["cascade_scale_only"])
    over = RandomisationResult(
        "cascading", settings["seed"], steps, values, scale_only
    ).over_steps()
    for method, row in table.items():
        for measure in MEASURES:
            row[keys.cascade(measure)] = over[method][measure].mean
        row[keys.CASCADE_PASS] = float(passes(over[method]))
    rec = recommend(table, settings)
    ev = SimpleNamespace(table=table, settings=settings)
    text = (folder / "scores.md").read_text()
    header = text[: text.index("| method |")]
    (folder / "scores.md").write_text(header + markdown_table(ev, rec) + "\n")
    summary.update(
        recommendation=rec.method, candidate=rec.method, ranking=rec.ranking,
        rejected=rec.rejected, notes=[*rec.notes, "rescored: the bootstrap was not re-run"],
        bootstrap_wins={},  # the run's shares came from the old rule; not recomputed here
    )  # fmt: skip
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    print(markdown_table(ev, rec))


if __name__ == "__main__":
    main()
