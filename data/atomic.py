"""Outputs written safely: checked before any work, written to a temporary name, renamed on
success, so an interrupted, killed or failed write never leaves a partial output or harms an
earlier one.

Every command checks all its outputs with :func:`check_outputs` before it computes anything
and writes each file through :func:`atomic_path`, which also

- removes the temporary files that killed processes left beside the output (``kill -9``
  cannot run clean-up code, so the next write does it);
- honours Ctrl-C even where a library (HDF5 through h5py) swallowed the interrupt: the
  temporary file is removed and :class:`KeyboardInterrupt` reaches the command (exit 130);
- turns a full disk or a file-size limit into :class:`OutputError`, one line naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from data.errors import InputError


class OutputError(InputError):
    """An output that cannot be written: no space, a file-size limit, no permission.

    ``broken_file``: a write failed half-way, so a library (HDF5) may hold a file it can no
    longer close safely; the command line then exits without the interpreter's clean-up.
    """

    def __init__(self, message: str, broken_file: bool = False) -> None:
        super().__init__(message)
        self.broken_file = broken_file


# errno values that mean "the disk (or a limit) cannot take this file"
_NO_SPACE = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def _inside(path: Path, folder: Path) -> bool:
    return folder in path.parents


def check_outputs(
    paths: Iterable[str | Path],
    overwrite: bool,
    new_folder: bool = False,
    error: type[InputError] = InputError,
    inputs: Iterable[str | Path] = (),
) -> None:
    """Refuse, before any work, an output that cannot or must not be written.

    An output is refused when it is one of the command's ``inputs`` or inside an input folder
    (``--overwrite`` or not: it would be lost), exists without ``overwrite``, is a folder
    where a file is expected, or lies in a folder that is missing (unless ``new_folder``: the
    command creates the outputs' folder itself) or not writable.

    Every command that writes files calls this once for all of them, so the refusal names
    the first file in the way and nothing has been computed yet.
    """
    sources = [Path(p).resolve() for p in inputs]
    for path in map(Path, paths):
        resolved = path.resolve()
        for source in sources:
            if resolved == source or _inside(resolved, source):
                raise error(f"{path}: the output is an input of this command; choose another name")
        if path.is_dir():
            raise error(f"{path}: is a folder; expected the name of an output file")
        if path.exists() and not overwrite:
            raise error(f"{path}: output file already exists; pass --overwrite to replace it")
        check_folder(path.parent, new_folder, error, output=path)


def check_folder(
    folder: Path,
    create: bool = False,
    error: type[InputError] = InputError,
    output: Path | None = None,
) -> None:
    """Refuse an output folder that is missing (unless ``create``), not a folder or not
    writable; with ``create`` the nearest existing parent must be a writable folder.
    Messages start with ``output`` (the file to be written there) when given."""
    folder = Path(folder)
    at = f"{output}: " if output is not None else ""
    existing = folder
    while not existing.exists():
        if not create:
            raise error(f"{at}output folder {folder} does not exist")
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise error(f"{at}{existing} is a file; expected an output folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise error(f"{at}output folder {existing} is not writable")


def check_space(path: str | Path, nbytes: int, what: str = "the output") -> None:
    """Refuse up front an output of about ``nbytes`` that the free space of its folder or
    the process's file-size limit (``ulimit -f``) cannot take: one line, nothing written."""
    import resource
    import shutil

    path = Path(path)
    folder = path.parent
    while not folder.is_dir() and folder.parent != folder:
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if nbytes > free:
        raise OutputError(
            f"{path}: {what} needs about {_size(nbytes)}; {_size(free)} free in {folder}"
        )
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and nbytes > limit:
        raise OutputError(
            f"{path}: {what} needs about {_size(nbytes)}; the file-size limit (ulimit -f) "
            f"is {_size(limit)}"
        )


# what HDF5 adds to a small file's data (headers, attributes, chunk indices), at least
HDF5_OVERHEAD = 1 << 16


def write_netcdf(ds, path: str | Path, **kwargs) -> Path:
    """``ds.to_netcdf(engine="h5netcdf")`` atomically, after checking that the disk and the
    file-size limit take it with a margin: HDF5 can crash when a write fails half-way, so a
    file that will not fit is refused before it is started."""
    path = Path(path)
    check_space(path, int(ds.nbytes * 1.25) + HDF5_OVERHEAD, f"a {ds.nbytes}-byte dataset")
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf", **kwargs)
    return path


def _size(nbytes: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if nbytes < 1024 or unit == "TiB":
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return ""


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


_STALE = re.compile(r"\.(?P<name>.+)\.tmp-(?P<pid>\d+)$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale(path: Path) -> list[Path]:
    """Delete the temporary files (or folders) of ``path`` left by processes that no longer
    run."""
    import shutil

    removed = []
    with contextlib.suppress(OSError):
        for candidate in path.parent.glob(f".{path.name}.tmp-*"):
            match = _STALE.match(candidate.name)
            pid = int(match["pid"]) if match and match["name"] == path.name else None
            if pid is not None and pid != os.getpid() and not _alive(pid):
                with contextlib.suppress(OSError):
                    if candidate.is_dir():
                        shutil.rmtree(candidate)
                    else:
                        candidate.unlink()
                    removed.append(candidate)
    return removed


@contextlib.contextmanager
def atomic_folder(folder: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling folder for a set of outputs; only when the block completes
    are its files moved into ``folder`` (each by a rename), so a failure or an interrupt
    part-way leaves the earlier set whole rather than new files beside old ones."""
    import shutil

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(folder)
    tmp = _temporary(folder)
    tmp.mkdir()
    try:
        yield tmp
        folder.mkdir(exist_ok=True)
        for item in sorted(tmp.iterdir()):
            os.replace(item, folder / item.name)
    except OutputError as exc:  # name the output, not its staging place
        # the same exception, reworded: a new one would release the failed write's frames,
        # and with them an HDF5 file whose clean-up crashes (see the command line's exit)
        exc.args = (str(exc).replace(str(tmp), str(folder)),)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _guard() -> Iterator[list[BaseException]]:
    """Collect what a C library swallows while the block runs: every SIGINT (still raising
    :class:`KeyboardInterrupt` as usual) and every exception it could only report as
    "ignored" (h5py does so for write errors and interrupts that reach an object's
    deallocation), so that the block's end can raise them instead of renaming."""
    caught: list[BaseException] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    previous_signal, previous_hook = signal.getsignal(signal.SIGINT), sys.unraisablehook

    def on_interrupt(signum, frame):
        if previous_signal is signal.SIG_IGN:
            return
        caught.append(KeyboardInterrupt())
        if callable(previous_signal):
            previous_signal(signum, frame)
        raise KeyboardInterrupt

    def swallowed(exc: BaseException | None) -> bool:
        if isinstance(exc, KeyboardInterrupt) or (exc is not None and _no_space(exc)):
            caught.append(exc)
            return True
        return False

    def on_unraisable(unraisable):
        if not swallowed(unraisable.exc_value):
            previous_hook(unraisable)

    def on_printed(kind, value, traceback):  # Cython prints some before "ignoring" them
        if not swallowed(value):
            previous_print(kind, value, traceback)

    previous_print = sys.excepthook
    signal.signal(signal.SIGINT, on_interrupt)
    sys.unraisablehook, sys.excepthook = on_unraisable, on_printed
    try:
        yield caught
    finally:
        signal.signal(signal.SIGINT, previous_signal)
        sys.unraisablehook, sys.excepthook = previous_hook, previous_print


def ignore_file_size_signal() -> None:
    """Let a file-size limit (``ulimit -f``) fail a write with EFBIG instead of killing the
    process with SIGXFSZ, so that the temporary file is removed and the error is one line."""
    if hasattr(signal, "SIGXFSZ") and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def _no_space(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) says the disk or a limit is full."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
            return True
        text = str(exc).lower()
        if "no space left" in text or "file too large" in text or "disk quota" in text:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it into place only on success.

    On any exception or interrupt the temporary file is removed and ``path`` is left as it
    was; a full disk raises :class:`OutputError` naming ``path``. Temporary files of ``path``
    left by dead processes are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    ignore_file_size_signal()
    tmp = _temporary(path)
    try:
        with _guard() as caught:
            try:
                yield tmp
            except Exception as exc:
                if _no_space(exc) or any(_no_space(e) for e in caught):
                    raise OutputError(_full(path), broken_file=True) from None
                raise
            if any(isinstance(e, KeyboardInterrupt) for e in caught):
                raise KeyboardInterrupt  # a library caught Ctrl-C: honour it, do not rename
            if caught:
                raise OutputError(_full(path), broken_file=True)
        os.replace(tmp, path)
    except OSError as exc:
        if _no_space(exc):
            raise OutputError(_full(path), broken_file=True) from None
        raise
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _full(path: Path) -> str:
    return (
        f"{path}: not written: no space left on the device or a file-size limit reached; "
        "free space and rerun (earlier outputs are untouched)"
    )
