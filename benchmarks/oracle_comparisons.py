"""Run the two oracle comparison tests in an environment that has their oracles.

``test_against_quantus`` (ground-truth scores against Quantus) and ``test_against_scikit_image``
(SSIM against scikit-image) need packages the project does not depend on, so CI skips them.
This script builds that environment, a virtual environment outside the repository with
torch 2.13.0 (CPU), the project (``-e .[dev]``), Quantus and scikit-image, or reuses one that
already works, then runs the two tests there. It fails unless both ran and passed, and writes
``benchmarks/results/oracle_comparisons.json``::

    python benchmarks/oracle_comparisons.py --venv /work/venv-oracles
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = Path("/work/venv-oracles")
OUT = ROOT / "benchmarks" / "results" / "oracle_comparisons.json"
TORCH = "torch==2.13.0"  # the CPU wheel on local disk; a bare `torch` would fetch a CUDA build
ORACLES = ["quantus==0.6.0", "scikit-image==0.26.0"]
KEYWORDS = "quantus or scikit_image"
# test_against_quantus (ground-truth tests) and test_against_scikit_image (similarity tests)
EXPECTED_PASSED = 2
PROBE = """import importlib.metadata as m, json, platform
names = ["torch", "quantus", "scikit-image", "numpy"]
print(json.dumps([platform.python_version(), {p: m.version(p) for p in names}]))"""
CHECK = f"""
import importlib.metadata as md, pathlib, quantus, skimage.metrics, explain
assert md.version("torch").split("+")[0] == "{TORCH.split("==")[1]}", md.version("torch")
assert pathlib.Path(explain.__file__).resolve().is_relative_to({str(ROOT)!r}), explain.__file__
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; ``argv`` defaults to ``sys.argv[1:]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--venv", type=Path, default=VENV, help="environment to build or reuse, outside the repo")
    add("--rebuild", action="store_true", help="recreate the environment even if it works")
    add("--out", type=Path, default=OUT, help="JSON to write (default: %(default)s)")
    return parser.parse_args(argv)


def timed(cmd: list[str], steps: dict[str, float], name: str) -> None:
    """Run ``cmd`` (raising on failure), recording its wall time under ``steps[name]``."""
    print(f"[{name}] {shlex.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    steps[name] = round(time.perf_counter() - t0, 1)
    print(f"[{name}] {steps[name]} s", flush=True)


def build(venv: Path, rebuild: bool, steps: dict[str, float]) -> Path:
    """Make ``venv`` hold torch, the project and the oracles; return its python."""
    py = venv / "bin" / "python"
    if not rebuild and py.exists() and subprocess.run([py, "-c", CHECK]).returncode == 0:
        print(f"[venv] reusing {venv}", flush=True)
        return py
    if venv.resolve().is_relative_to(ROOT):
        sys.exit(f"--venv must lie outside the repository ({ROOT})")
    timed([sys.executable, "-m", "venv", "--clear", str(venv)], steps, "venv")
    pip = [str(py), "-m", "pip", "install", "-q"]
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as pin:
        pin.write(TORCH + "\n")  # keeps later steps from replacing torch
        pin.flush()
        timed([*pip, TORCH], steps, "torch")
        timed([*pip, "-c", pin.name, "-e", f"{ROOT}[dev]"], steps, "project")
        timed([*pip, "-c", pin.name, *ORACLES], steps, "oracles")
    subprocess.run([str(py), "-c", CHECK], check=True)
    return py


def outcomes(junit: Path) -> list[dict[str, object]]:
    """Each test case in a JUnit XML report: name, outcome and time."""
    tests = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        kinds = [c.tag for c in case if c.tag in ("failure", "error", "skipped")]
        name = f"{case.get('classname')}::{case.get('name')}"
        outcome = kinds[0] if kinds else "passed"
        tests.append({"name": name, "outcome": outcome, "time_s": float(case.get("time", 0))})
    return tests


def main(argv: list[str] | None = None) -> int:
    """Build or reuse the environment, run the tests, write the JSON; 0 only if both passed."""
    args = parse_args(argv)
    t0 = time.perf_counter()
    steps: dict[str, float] = {}
    py = build(args.venv, args.rebuild, steps)
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        cmd = [str(py), "-m", "pytest", "-q", "-rs", str(ROOT / "tests"), "-k", KEYWORDS]
        print(f"[tests] {shlex.join(cmd)}", flush=True)
        t1 = time.perf_counter()
        run = subprocess.run(
            [*cmd, f"--junitxml={junit}"], cwd=ROOT, capture_output=True, text=True
        )
        steps["tests"] = round(time.perf_counter() - t1, 1)
        print(run.stdout + run.stderr, flush=True)
        tests = outcomes(junit) if junit.exists() else []
    lines = [ln for ln in run.stdout.splitlines() if re.search(r"\d+ \w+.* in [\d.]+s", ln)]
    summary = lines[-1].strip("= ") if lines else ""
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (\w+)", summary)}
    ok = (
        run.returncode == 0
        and counts.get("passed", 0) == EXPECTED_PASSED
        and not any(counts.get(k, 0) for k in ("skipped", "failed", "error", "errors"))
    )
    out = subprocess.run([str(py), "-c", PROBE], capture_output=True, text=True, check=True)
    vpy, versions = json.loads(out.stdout)
    result = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
        "python": vpy,
        "venv": str(args.venv),
        "versions": versions,
        "command": shlex.join(cmd),
        "summary": summary,
        "expected_passed": EXPECTED_PASSED,
        "ok": ok,
        "tests": tests,
        "steps_s": steps,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    if not ok:
        print(
            f"FAIL: expected exactly {EXPECTED_PASSED} passed, none skipped or failed; "
            f"got {summary!r} (exit {run.returncode})",
            file=sys.stderr,
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
