"""Re-apply the sanity pass rule and the recommendation to a finished ``surrogate evaluate`` run.

Reads the per-design cascade similarities stored in ``scores.nc`` and the table in
``summary.json``, recomputes the cascade columns with :meth:`RandomisationResult.over_steps`
(the current rule) and the recommendation, and rewrites ``scores.md`` and ``summary.json``.
No map is recomputed.

    python benchmarks/rescore_eval.py runs/eval-default
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import xarray as xr

from explain.evaluation import table as keys
from explain.evaluation.recommend import recommend
from explain.evaluation.report import markdown_table
from explain.evaluation.sanity import MEASURES, RandomisationResult, passes


def main() -> None:
    folder = Path(sys.argv[1])
    summary = json.loads((folder / "summary.json").read_text())
    table, settings = summary["table"], summary["settings"]
    with xr.open_dataset(folder / "scores.nc", engine="h5netcdf") as ds:
        sim = ds["cascade_similarity"].load()
    values = {
        str(m): {k: sim.sel({"method": m, "measure": k}).values.astype(float) for k in MEASURES}
        for m in sim["method"].values
    }
    steps = tuple(str(s) for s in sim["cascade_step"].values[1:])
    over = RandomisationResult("cascading", settings["seed"], steps, values).over_steps()
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
        recommendation=rec.method, ranking=rec.ranking, rejected=rec.rejected, notes=rec.notes
    )
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    print(markdown_table(ev, rec))


if __name__ == "__main__":
    main()
