"""Global attributes that make an output file describe itself (CF conventions) and its inputs.

Every netCDF file the tool writes (explanation maps, predictions, evaluation scores) carries
:func:`cf_attrs` (``Conventions``, ``title``, ``history``, ``source``) and :func:`provenance`
(``checkpoint``, ``checkpoint_sha256``, ``campaign``, ``campaign_sha256``,
``software_version``), so a file found on its own says what made it and from which inputs.
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timezone
from pathlib import Path

from data.campaign import CONVENTIONS, software_version

_BLOCK = 1 << 20  # hash in 1 MiB blocks: memory stays bounded for any campaign size


def sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def provenance(
    checkpoint: str | os.PathLike[str] | None = None,
    campaign: str | os.PathLike[str] | None = None,
) -> dict[str, str]:
    """The inputs of an output file: each path given and its sha256, and the software version.

    Keys: ``checkpoint`` and ``checkpoint_sha256`` (with ``checkpoint``), ``campaign`` and
    ``campaign_sha256`` (with ``campaign``), and always ``software_version``. Each file is
    read once, so call this once per command.
    """
    attrs: dict[str, str] = {}
    for name, path in (("checkpoint", checkpoint), ("campaign", campaign)):
        if path is not None:
            attrs[name] = os.fspath(path)
            attrs[f"{name}_sha256"] = sha256(path)
    attrs["software_version"] = software_version()
    return attrs


def cf_attrs(title: str, command: str, source: str) -> dict[str, str]:
    """CF global attributes: ``Conventions``, ``title``, ``history`` and ``source``.

    Args:
        title: What the file holds, in a few words.
        command: The ``surrogate`` subcommand that writes it (``"explain"``), for ``history``:
            ``"created 2025-01-31T12:00:00+00:00 by surrogate explain 0.1.0"`` (UTC).
        source: How the data were produced (CF ``source``).
    """
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return {
        "Conventions": CONVENTIONS,
        "title": title,
        "history": f"created {now} by surrogate {command} {software_version()}",
        "source": source,
    }
