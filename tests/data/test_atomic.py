"""Outputs are checked before any work and written atomically: refusals, stale temporary
files, a full disk and Ctrl-C, through the real ``surrogate`` entry point where it matters."""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data.atomic import OutputError, atomic_path, check_outputs, check_space, remove_stale
from data.errors import InputError


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --- check_outputs ------------------------------------------------------------------------


def test_output_that_is_a_folder_is_refused(tmp_path):
    (tmp_path / "maps.nc").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        check_outputs([tmp_path / "maps.nc"], overwrite=True)


def test_output_inside_an_input_folder_is_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(InputError, match="is an input"):
        check_outputs([run / "x.nc"], overwrite=True, inputs=[run])


def test_unwritable_folder_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    from train.cli import main

    folder = tmp_path / "locked"
    folder.mkdir(mode=0o555)
    if os.geteuid() == 0:  # root writes everywhere: let the permission check see a user's view
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, m: Path(p) != folder and real(p, m))
    args = ["simulate", "--samples", "10", "--size", "16", "--out", str(folder / "c.nc")]
    assert main(args) == 2
    assert "locked is not writable" in one_line(capsys.readouterr().err)
    assert list(folder.iterdir()) == []


def test_missing_folder_is_created_only_when_allowed(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        check_outputs([tmp_path / "new" / "x.nc"], overwrite=False)
    check_outputs([tmp_path / "new" / "x.nc"], overwrite=False, new_folder=True)
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="is a file"):
        check_outputs([tmp_path / "file" / "x.nc"], overwrite=False, new_folder=True)


# --- atomic_path --------------------------------------------------------------------------


def test_stale_temporary_files_of_dead_processes_are_removed(tmp_path):
    target = tmp_path / "out.nc"
    stale = tmp_path / f".out.nc.tmp-{dead_pid()}"
    live = tmp_path / f".out.nc.tmp-{os.getppid()}"  # a running process: left alone
    other = tmp_path / f".other.nc.tmp-{dead_pid()}"  # another output's: left alone
    for path in (stale, live, other):
        path.write_text("partial")
    with atomic_path(target) as tmp:
        tmp.write_text("done")
    assert target.read_text() == "done"
    assert not stale.exists()
    assert live.exists()
    assert other.exists()
    assert remove_stale(tmp_path / "other.nc") == [other]


def test_failed_write_leaves_the_earlier_output(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("earlier")

    def write():
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write()
    assert target.read_text() == "earlier"
    assert list(tmp_path.iterdir()) == [target]


def test_interrupt_a_library_swallowed_is_still_honoured(tmp_path):
    """h5py reports an interrupt raised during an object's clean-up as "ignored"; the write
    must still stop, with nothing at the final name."""
    target = tmp_path / "out.txt"

    class Swallows:
        def __del__(self):
            raise KeyboardInterrupt  # what Ctrl-C during HDF5's clean-up looks like

    def write():
        with atomic_path(target) as tmp:
            tmp.write_text("complete-looking")
            Swallows()  # deleted at once; Python prints "Exception ignored" and goes on

    with pytest.raises(KeyboardInterrupt):
        write()
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_space_check_names_the_file_and_the_limit(tmp_path):
    expected = r"out.nc: the campaign needs about 1024\.0 TiB; .* free in "
    with pytest.raises(OutputError, match=expected):
        check_space(tmp_path / "out.nc", 1 << 50, "the campaign")


# --- through the command line -------------------------------------------------------------


def surrogate(*args: str, limit: int | None = None, **kwargs) -> subprocess.Popen:
    """Start ``surrogate ARGS`` as a user would: Ctrl-C live, optionally a file-size limit."""

    def setup():
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # a background job starts with it ignored
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    code = "from train.cli import console_main; console_main()"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        preexec_fn=setup,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_file_size_limit_is_one_line_and_keeps_the_earlier_campaign(tmp_path):
    out = tmp_path / "c.nc"
    out.write_bytes(b"earlier campaign")
    before = digest(out)
    proc = surrogate(
        "simulate", "--samples", "200", "--size", "32", "--out", str(out), "--overwrite",
        "--quiet", limit=100_000,
    )  # fmt: skip
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2  # refused up front, before any work
    assert "c.nc" in one_line(err)
    assert "file-size limit" in err
    assert digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.nc"]


def test_full_disk_during_the_write_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    """A disk that fills while writing (the estimate passed): one line, exit 1, no crash
    in HDF5's clean-up, nothing at the final name."""
    code = (
        "import resource, sys; import data.campaign as c\n"
        "c.check_space = lambda *a, **k: None\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, resource.RLIM_INFINITY))\n"
        "from train.cli import console_main; console_main()"
    )
    out = tmp_path / "c.nc"
    proc = subprocess.run(
        [sys.executable, "-c", code, "simulate", "--samples", "400", "--size", "32",
         "--out", str(out), "--quiet"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "c.nc: not written" in one_line(proc.stderr)
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_during_the_write_exits_130_and_keeps_the_earlier_campaign(tmp_path):
    out = tmp_path / "c.nc"
    out.write_bytes(b"earlier campaign")
    before = digest(out)
    proc = surrogate(
        "simulate", "--samples", "6000", "--size", "64", "--out", str(out), "--overwrite",
        "--quiet",
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not any(p.name.startswith(".c.nc.tmp-") for p in tmp_path.iterdir()):
        assert proc.poll() is None, "finished before it could be interrupted"
        assert time.monotonic() < deadline, "never started writing"
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted" in one_line(err)
    assert digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.nc"]


def test_the_message_starts_its_own_line_after_a_progress_bar(capsys):
    """An error or Ctrl-C in the middle of a progress bar: the bar is closed first, so the
    message is a line of its own, not the tail of the bar's line."""
    from tqdm import tqdm

    from train.cli import _say

    bar = tqdm(total=10, file=sys.stderr, desc="explaining")
    bar.update(3)
    _say("explain", "interrupted; outputs left as they were")
    lines = capsys.readouterr().err.replace("\r", "\n").splitlines()
    assert lines[-1] == "surrogate explain: interrupted; outputs left as they were"


def test_a_set_of_outputs_is_replaced_whole_or_not_at_all(tmp_path):
    from data.atomic import atomic_folder

    out = tmp_path / "scores"
    out.mkdir()
    (out / "a.md").write_text("earlier a")
    (out / "b.nc").write_text("earlier b")

    def write(fail: bool):
        with atomic_folder(out) as staging:
            (staging / "a.md").write_text("new a")
            if fail:
                raise OSError(28, "No space left on device")  # the second file never lands
            (staging / "b.nc").write_text("new b")

    with pytest.raises(OSError, match="No space left"):
        write(fail=True)
    assert (out / "a.md").read_text() == "earlier a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores"]
    write(fail=False)
    assert [(out / n).read_text() for n in ("a.md", "b.nc")] == ["new a", "new b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores"]
