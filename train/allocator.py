"""Keep large CPU buffers inside the process between passes (glibc ``malloc`` settings).

The evaluation and the training push thousands of same-sized batches through the model; each
pass allocates buffers of tens of MB (a chunk of 1,024 spectra of 128 x 76 complex numbers is
80 MB). glibc serves every block above its mmap threshold (at most 32 MB) with a fresh
``mmap`` and returns it on ``free``, so every pass pays to fault in and zero its memory again:
on this project's 2-core CPU that was half the CPU time of ``surrogate evaluate`` (system
time 67 s beside 80 s of user time on 20 designs). Raising the threshold and the trim
threshold keeps freed blocks in the heap for the next pass; the arithmetic is unchanged, so
results are bit for bit the same (``benchmarks/bench_evaluate.py``).

Applied once per ``surrogate`` process (:func:`keep_large_buffers`, from :mod:`train.cli`);
a library user calls it the same way. It is skipped where it cannot apply or is not wanted:
not glibc (e.g. macOS), an allocator preloaded in its place (jemalloc, tcmalloc), a
``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` / ``GLIBC_TUNABLES`` setting of the
user's own, or ``SURROGATE_MALLOC=default``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30  # blocks below 1 GiB come from the heap and are reused
TRIM_THRESHOLD = 1 << 30  # up to 1 GiB of free heap is kept for the next pass
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def keep_large_buffers() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; True when they were set."""
    if os.environ.get("SURROGATE_MALLOC", "") == "default":
        return False
    if any(name in os.environ for name in _USER_SETTINGS):
        return False
    preload = os.environ.get("LD_PRELOAD", "")
    if "jemalloc" in preload or "tcmalloc" in preload or "mimalloc" in preload:
        return False
    name = ctypes.util.find_library("c")
    if name is None or "libc.so" not in name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # a libc without mallopt (musl)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
