"""Deep Compression's relative-index sparse format (Han, Mao & Dally 2016, section 2), the one encoder that both
pruning's stored size and weight sharing's position stream use.

Each stored entry keeps, in `bits` bits, the number of zeros skipped since the previous stored entry: 0 to
2**bits - 1, i.e. an index difference of 1 to 2**bits (the reference decoder recovers positions as
cumsum(field + 1) - 1). A run of zeros longer than 2**bits - 1 does not fit one field, so a *filler* entry is
stored: field 2**bits - 1, placed on the 2**bits-th position of the run and holding a zero value. Each filler
covers 2**bits positions, so a run of z zeros before a non-zero takes z // 2**bits fillers. A filler is a real
entry: it takes an index field and a value slot (a zero weight, or the zero code of a codebook). Zeros after the
last non-zero are never stored (the decoder knows the tensor's size).
"""

from __future__ import annotations

import numpy as np


def relative_index(positions: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Encode the flat positions of the non-zeros (strictly increasing) with `bits`-bit relative indices.

    Returns (fields, filler): one field per stored entry, in order, and a mask of the entries that are fillers
    (the others are the non-zeros, in the order of `positions`). len(fields) is the number of stored entries.
    """
    if bits < 1:
        raise ValueError(f"relative indices need at least 1 bit, got {bits}")
    positions = np.asarray(positions, dtype=np.int64).reshape(-1)
    zeros = np.diff(positions, prepend=-1) - 1  # zeros skipped before each non-zero
    if (zeros < 0).any():
        raise ValueError("positions must be strictly increasing and non-negative")
    span = 2**bits
    fillers = zeros // span
    ends = np.cumsum(fillers + 1) - 1  # where each non-zero lands in the stream, after its fillers
    fields = np.full(int(ends[-1]) + 1 if len(ends) else 0, span - 1, dtype=np.int64)
    fields[ends] = zeros - fillers * span
    filler = np.ones(len(fields), dtype=bool)
    filler[ends] = False
    return fields, filler
