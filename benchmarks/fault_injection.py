"""Fault injection: every writing command under Ctrl-C, kill -9, a full disk and an unwritable
folder. After each fault the earlier outputs must be intact, the terminal must show one line
and no traceback (kill -9 shows nothing: the process cannot speak), and a rerun must complete.

    python benchmarks/fault_injection.py --out benchmarks/results/fault_injection.json

Each command first runs once cleanly (its time sets when the faults strike: at 25%, 50% and
80% of it, so they land in start-up, computation and writing), then

- ``sigint@P``: SIGINT at P of the clean time (Ctrl-C): exit 130, one line (the last on
  stderr: ``fit`` prints progress lines before it); or, when the signal lands in the
  interpreter's shut-down after the work is done, death by the signal (-2, which a shell
  also reports as 130) with the outputs complete;
- ``kill9@P``: SIGKILL at P (a crash, an out-of-memory kill): no output at the final name
  other than the earlier one; stale temporary files are removed by the rerun;
- ``full-disk``: a file-size limit (``ulimit -f``) smaller than the output: exit 1, one line;
- ``unwritable``: the output folder made immutable (``chattr +i``, which binds root too), or
  read-only for an unprivileged user: exit 2, one line, before any work.

"Earlier outputs intact" means byte-identical (sha256) for simulate, explain and evaluate. For
``fit`` resuming a run, the run folder's checkpoints may legitimately advance by an epoch; the
check is that every checkpoint still loads and that ``--ckpt_path last`` resumes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ENTRY = "from train.cli import console_main; console_main()"
POINTS = (0.25, 0.5, 0.8)


def digests(paths: list[Path]) -> dict[str, str]:
    """sha256 of every file under ``paths`` (files or folders)."""
    out = {}
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            if f.exists():
                out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def snapshot(paths: list[Path], folder: Path) -> list[tuple[Path, Path]]:
    """Copies of the files under ``paths`` in ``folder``: ``(original, copy)`` pairs."""
    pairs = []
    for i, name in enumerate(digests(paths)):
        copy = folder / f"{i:04d}"
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(name, copy)
        pairs.append((Path(name), copy))
    return pairs


def restore(pairs: list[tuple[Path, Path]]) -> None:
    for original, copy in pairs:
        shutil.copy2(copy, original)


def temporaries(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob(".*.tmp-*"))


def launch(args: list[str], limit: int | None = None, user: int | None = None):
    def setup():
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # as in a terminal, not a background job
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    return subprocess.Popen(
        [sys.executable, "-c", ENTRY, *args],
        cwd=ROOT,
        preexec_fn=setup,
        user=user,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(args: list[str], signal_at: float | None = None, signum: int = 0, **kwargs) -> dict:
    start = time.perf_counter()
    proc = launch(args, **kwargs)
    if signal_at is not None:
        try:
            proc.wait(timeout=signal_at)
        except subprocess.TimeoutExpired:
            proc.send_signal(signum)
    out, err = proc.communicate(timeout=1800)
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    lines = [line for line in lines if not _progress(line)]
    return {
        "rc": proc.returncode,
        "seconds": round(time.perf_counter() - start, 2),
        "stderr_lines": lines[-5:],
        "stderr_line_count": len(lines),
        "traceback": "Traceback" in err,
        "stdout_tail": out.splitlines()[-2:],
    }


def _progress(line: str) -> bool:
    """tqdm and Lightning progress bars, which share stderr with the message."""
    return any(mark in line for mark in ("it/s]", "s/it]", "design/s]", "sample/s]", "%|", "\r"))


def immutable(folder: Path, on: bool) -> bool:
    """``chattr +i``/``-i``; False where the file system or the user cannot."""
    flag = "+i" if on else "-i"
    return subprocess.run(["chattr", flag, str(folder)], capture_output=True).returncode == 0


def checkpoints_load(run_dir: Path) -> bool:
    from surrogate.checkpoint import load_model

    try:
        for ckpt in (run_dir / "checkpoints").glob("*.ckpt"):
            load_model(ckpt)
    except Exception:
        return False
    return True


class Case:
    """One command: its clean invocation, what it must leave intact, how to rerun it."""

    def __init__(self, name: str, args: list[str], protect: list[Path], out: Path) -> None:
        self.name, self.args, self.protect, self.out = name, args, protect, out

    def intact(self, before: dict[str, str]) -> bool:
        if self.name == "fit":
            return checkpoints_load(self.out)
        return digests(self.protect) == before


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = ROOT / "benchmarks/results/fault_injection.json"
    parser.add_argument("--out", type=Path, default=default)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: temp)")
    parser.add_argument("--samples", type=int, default=3000, help="campaign size of simulate")
    opts = parser.parse_args()
    work = Path(opts.work or tempfile.mkdtemp(prefix="fault-injection-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    smoke = ROOT / "configs" / "smoke.yaml"

    # the earlier outputs the faults must not harm
    campaign, explained = work / "campaign.nc", work / "earlier"
    print(f"scratch folder: {work}")
    base = ["simulate", "--samples", "400", "--size", "16", "--quiet", "--out", str(campaign)]
    assert run(base)["rc"] == 0
    run_dir = work / "run"
    fit = ["fit", "--config", str(smoke), "--data.path", str(campaign), "--run_dir", str(run_dir)]
    assert run([*fit, "--trainer.max_epochs", "2"])["rc"] == 0, "initial fit failed"
    # a copy: the fit case below resumes the run, and its best-*.ckpt changes name
    ckpt = work / "model.ckpt"
    shutil.copy(next((run_dir / "checkpoints").glob("best-*.ckpt")), ckpt)
    explained.mkdir()
    maps, scores = explained / "maps.nc", explained / "evaluate"
    ex = ["explain", "--checkpoint", str(ckpt), "--data", str(campaign), "--out", str(maps)]
    ex += ["--methods", "gradient,integrated-gradients,gradcam"]
    ev = ["evaluate", "--checkpoint", str(ckpt), "--data", str(campaign), "--out", str(scores)]
    ev += ["--split", "all", "--steps", "20", "--sanity-samples", "4"]
    # the earlier outputs differ from what the faulted commands write (other designs, another
    # seed), so that a file replaced part-way shows in its sha256
    assert run([*ex, "--samples", "0:200"])["rc"] == 0, "initial explain failed"
    assert run([*ev, "--samples", "48"])["rc"] == 0, "initial evaluate failed"
    ex += ["--samples", "all"]
    ev += ["--samples", "64"]

    big = work / "big.nc"
    simulate = ["simulate", "--samples", str(opts.samples), "--size", "64", "--quiet"]
    big_args = [*simulate, "--out", str(big)]
    assert run(big_args)["rc"] == 0
    cases = [
        Case("simulate", [*big_args, "--overwrite", "--seed", "1"], [big], big),
        Case("fit", [*fit, "--ckpt_path", "last", "--trainer.max_epochs", "6"], [run_dir], run_dir),
        Case("explain", [*ex, "--overwrite"], [maps, campaign, ckpt], maps),
        Case("evaluate", [*ev, "--overwrite"], [scores, campaign, ckpt], scores),
    ]
    results = []
    for case in cases:
        earlier = snapshot(case.protect, work / "snapshots" / case.name)
        clean = run(case.args)
        assert clean["rc"] == 0, f"clean {case.name} failed: {clean}"
        if case.name == "fit":  # the clean resume advanced the run: the next resumes go on
            case.args[-1] = str(int(case.args[-1]) + 4)
        else:  # back to the earlier outputs, which every fault must leave as they are
            restore(earlier)
        before = digests(case.protect)
        duration = clean["seconds"]
        faults: list[tuple[str, dict]] = []
        for p in POINTS:
            faults.append((f"sigint@{p:.0%}", {"signal_at": p * duration, "signum": signal.SIGINT}))
            faults.append((f"kill9@{p:.0%}", {"signal_at": p * duration, "signum": signal.SIGKILL}))
        faults.append(("full-disk", {"limit": 16 * 1024}))
        faults.append(("unwritable", {}))
        for fault, kwargs in faults:
            locked = case.out.parent if case.out.suffix else case.out
            if fault == "unwritable" and not immutable(locked, True):
                results.append({"command": case.name, "fault": fault, "skipped": "no chattr"})
                continue
            try:
                outcome = run(case.args, **kwargs)
            finally:
                if fault == "unwritable":
                    immutable(locked, False)
            kept = case.intact(before)
            leftovers = temporaries(work)
            if case.name == "fit":  # a resume trains further each time (it may have finished)
                case.args[-1] = str(int(case.args[-1]) + 4)
            rerun = run(case.args)
            if case.name == "fit":
                case.args[-1] = str(int(case.args[-1]) + 4)
            after_rerun = temporaries(work)
            if case.name != "fit":
                restore(earlier)
            before = digests(case.protect)
            expected_rc = {
                "sigint": (130, -2), "kill9": (-9,), "full-disk": (1, 2), "unwritable": (2,),
            }  # fmt: skip
            kind = fault.split("@")[0]
            finished_first = outcome["rc"] == 0  # the fault came after the command ended
            # what the command said last, after its progress lines: exactly its one line
            last = outcome["stderr_lines"][-1] if outcome["stderr_lines"] else ""
            said = {"sigint": "interrupted", "full-disk": "error:", "unwritable": "error:"}
            # -2: Ctrl-C during the interpreter's shut-down, after the work was done and the
            # handlers were gone (a shell reports it as 130 too); nothing is left to say
            spoke = kind == "kill9" or outcome["rc"] == -2
            spoke = spoke or last.startswith(f"surrogate {case.name}: {said[kind]}")
            # a command that finished before the fault replaced its outputs with complete new
            # ones, as it should: such a fault was not exercised and is counted apart
            ok = (
                (kept or finished_first)
                and (finished_first or outcome["rc"] in expected_rc[kind])
                and (finished_first or spoke)
                and not outcome["traceback"]
                and rerun["rc"] == 0
                and not after_rerun
            )
            row = {
                "command": case.name,
                "fault": fault,
                "clean_seconds": duration,
                **{k: outcome[k] for k in ("rc", "seconds", "stderr_line_count", "traceback")},
                "message": outcome["stderr_lines"][-1] if outcome["stderr_lines"] else "",
                "earlier_outputs_intact": kept,
                "temporaries_after_fault": len(leftovers),
                "rerun_rc": rerun["rc"],
                "temporaries_after_rerun": len(after_rerun),
                "finished_before_the_fault": finished_first,
                "ok": ok,
            }
            results.append(row)
            status = "ok  " if ok else "FAIL"
            print(
                f"{status} {case.name:<9} {fault:<11} rc={outcome['rc']:>4} "
                f"lines={outcome['stderr_line_count']} intact={kept} rerun={rerun['rc']} "
                f"tmp={len(leftovers)}->{len(after_rerun)}  {row['message'][:90]}"
            )
    summary = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores",
        "user": "root" if os.geteuid() == 0 else str(os.geteuid()),
        "command": " ".join(sys.argv),
        "cases": results,
        "passed": sum(bool(r.get("ok")) for r in results),
        "not_exercised": sum(bool(r.get("finished_before_the_fault")) for r in results),
        "failed": sum(r.get("ok") is False for r in results),
        "skipped": sum("skipped" in r for r in results),
    }
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"{summary['passed']} passed ({summary['not_exercised']} after the command had finished), "
        f"{summary['failed']} failed, {summary['skipped']} skipped -> {opts.out}"
    )
    if opts.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
