"""One random stream per design, so a design's scores do not depend on the others evaluated.

The evaluation draws random numbers for tie-breaking, random orders and ROAD's imputation
noise. From one generator shared by the whole run, a design's draws would depend on how many
designs came before it, on the batch size, and on how the designs are shared out between
processes. :func:`design_streams` gives every design its own ``torch.Generator``, seeded from
the run's seed and the design's key (its position in the campaign): the same design gets the
same draws whether it is scored alone, in a batch of 50 or on the second of four GPUs.

Every function that draws takes ``generator`` as one ``torch.Generator`` (all rows from it,
in order), a sequence of generators (one per row of the batch), or None (torch's global one).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

Generators = torch.Generator | Sequence[torch.Generator] | None


def design_streams(seed: int, keys: Sequence[int] | np.ndarray) -> list[torch.Generator]:
    """A CPU generator per design ``key``, seeded from ``(seed, key)`` (independent streams)."""
    streams = []
    for key in np.asarray(keys, dtype=np.int64).tolist():
        words = np.random.SeedSequence([int(seed), int(key)]).generate_state(2, np.uint32)
        streams.append(torch.Generator().manual_seed(int(words[0]) << 31 | int(words[1]) >> 1))
    return streams


def draw(
    kind: str,
    rows: int,
    size: Sequence[int],
    generator: Generators,
    dtype: torch.dtype = torch.float64,
    row_stream: Sequence[int] | np.ndarray | None = None,
) -> torch.Tensor:
    """``rows`` draws of shape ``size`` (``torch.rand`` or ``torch.randn``), ``(rows, *size)``.

    With one generator (or None) the whole block comes from it at once. With a sequence, row
    ``r`` comes from ``generator[row_stream[r]]`` (default ``r``), the rows of one stream in
    order, so each stream sees the same draws however the rows are grouped.
    """
    fn = {"rand": torch.rand, "randn": torch.randn}[kind]
    if generator is None or isinstance(generator, torch.Generator):
        return fn((rows, *size), generator=generator, dtype=dtype)
    streams = np.arange(rows) if row_stream is None else np.asarray(row_stream)
    if len(streams) != rows or (rows and not 0 <= streams.min() <= streams.max() < len(generator)):
        raise ValueError(f"{rows} rows need a stream each among {len(generator)} generators")
    out = torch.empty((rows, *size), dtype=dtype)
    for r, s in enumerate(streams.tolist()):
        out[r] = fn(tuple(size), generator=generator[s], dtype=dtype)
    return out


def rows_of(generator: Generators, index: Sequence[int] | np.ndarray) -> Generators:
    """The streams of rows ``index`` of a batch (one generator or None is shared by all)."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    return [generator[int(i)] for i in index]
