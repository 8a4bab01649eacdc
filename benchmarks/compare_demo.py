"""Compare two ``surrogate demo`` output folders: did a change alter any number?

Checks, and prints SAME or DIFF for each: the test metrics (``test_metrics.json``), the
campaign, every variable and attribute of the explanation file (maps bit for bit; run-specific
attributes such as paths and dates skipped), every value of the evaluation table
(``summary.json``), the recommendation, the text of the ``scores.md`` table and every variable
of ``scores.nc``. Exit status 0 only if everything is the same.

    surrogate demo --out /tmp/demo-before      # on the old commit
    surrogate demo --out /tmp/demo-after       # on the new one, same seed
    python benchmarks/compare_demo.py /tmp/demo-before /tmp/demo-after
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import xarray as xr

# paths, dates and file hashes ("created" is the date of files written before "history")
RUN_SPECIFIC = {
    "created",
    "history",
    "source",
    "checkpoint",
    "campaign",
    "checkpoint_sha256",
    "campaign_sha256",
}


def _open(path: Path) -> xr.Dataset:
    return xr.open_dataset(path, engine="h5netcdf")


def _same_values(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return True
    return a == b


def compare(a: Path, b: Path) -> list[tuple[str, bool, str]]:
    """``(what, same, detail)`` rows for two demo folders."""
    rows = []
    metrics = [
        json.loads(next((p / "run").glob("version_*/test_metrics.json")).read_text())
        for p in (a, b)
    ]
    rows.append(("test_metrics.json", metrics[0] == metrics[1], f"R2 {metrics[0]['test/r2']}"))
    with _open(a / "campaign.nc") as x, _open(b / "campaign.nc") as y:
        same = all(np.array_equal(x[v].values, y[v].values) for v in x.data_vars)
        rows.append(("campaign.nc", same and set(x.data_vars) == set(y.data_vars), ""))
    with _open(a / "explain/maps.nc") as x, _open(b / "explain/maps.nc") as y:
        for v in sorted(set(x.variables) | set(y.variables)):
            same = (
                v in x.variables and v in y.variables and np.array_equal(x[v].values, y[v].values)
            )
            rows.append((f"maps.nc {v}", same, str(x[v].shape) if v in x.variables else ""))
        for k in sorted((set(x.attrs) | set(y.attrs)) - RUN_SPECIFIC):
            rows.append(
                (f"maps.nc attribute {k}", _same_values(x.attrs.get(k), y.attrs.get(k)), "")
            )
    tables = [json.loads((p / "evaluate/summary.json").read_text()) for p in (a, b)]
    ta, tb = tables[0]["table"], tables[1]["table"]
    keys_same = ta.keys() == tb.keys() and all(ta[m].keys() == tb[m].keys() for m in ta)
    diffs = [
        abs(v - tb[m][k])
        for m in ta if m in tb
        for k, v in ta[m].items() if k in tb[m] and not _same_values(v, tb[m][k])
    ]  # fmt: skip
    detail = f"largest difference {max(diffs, default=0.0):g}"
    rows.append(("evaluation table, every value", keys_same and not diffs, detail))
    rec = [t["recommendation"] for t in tables]
    rows.append(("recommendation", rec[0] == rec[1], str(rec[0])))
    md = [(p / "evaluate/scores.md").read_text().split("\n", 3)[3] for p in (a, b)]
    rows.append(("scores.md table", md[0] == md[1], ""))
    with _open(a / "evaluate/scores.nc") as x, _open(b / "evaluate/scores.nc") as y:
        same = set(x.data_vars) == set(y.data_vars) and all(
            np.array_equal(x[v].values, y[v].values, equal_nan=True) for v in x.data_vars
        )
        rows.append(("scores.nc", same, ""))
    return rows


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    rows = compare(Path(sys.argv[1]), Path(sys.argv[2]))
    for what, same, detail in rows:
        print(f"{'SAME' if same else 'DIFF'}  {what}  {detail}".rstrip())
    ok = all(same for _, same, _ in rows)
    print(
        f"{'all the same' if ok else 'DIFFERENT'}: {sum(s for _, s, _ in rows)}/{len(rows)} checks"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
