"""Write-to-temporary-then-rename, so an interrupted write never leaves a partial output."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from data.errors import InputError


def check_outputs(
    paths: Iterable[str | Path],
    overwrite: bool,
    new_folder: bool = False,
    error: type[InputError] = InputError,
    inputs: Iterable[str | Path] = (),
) -> None:
    """Refuse, before any work, an output that exists (without ``overwrite``), has no folder,
    or is one of the command's ``inputs`` (``--overwrite`` or not: it would be lost).

    Every command that writes files calls this once for all of them, so the refusal names
    the first file in the way and nothing has been computed yet. ``new_folder``: the command
    creates the outputs' folder itself, so it need not exist yet.
    """
    sources = {Path(p).resolve() for p in inputs}
    for path in map(Path, paths):
        if path.resolve() in sources:
            raise error(f"{path}: the output is an input of this command; choose another name")
        if path.exists() and not overwrite:
            raise error(f"{path}: output file already exists; pass --overwrite to replace it")
        if not new_folder and not path.parent.is_dir():
            raise error(f"{path}: output folder {path.parent} does not exist")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it into place only on success.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
