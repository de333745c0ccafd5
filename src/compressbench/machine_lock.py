"""Keep timings apart from other work on the same machine when several workers share it.

Measured here (2 cores): a 2-thread training beside another busy process ran several times slower, and an int8 / fp32
ratio swung from 1.5x to 6x with load. So when `COMPRESSBENCH_MACHINE_LOCK` names a file (a search with several
workers sets it), training holds a shared lock on it and every timing an exclusive one: any number of trainings may
run together, but a timing waits until none runs, and no training starts while a timing runs. Without the variable
both are no-ops, so a single process pays nothing.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

VARIABLE = "COMPRESSBENCH_MACHINE_LOCK"


@contextmanager
def _held(mode: int) -> Iterator[None]:
    path = os.environ.get(VARIABLE)
    if not path:
        yield
        return
    with open(path, "a+") as handle:
        fcntl.flock(handle, mode)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def training_slot():
    """Held while a model trains: shared with other trainings, exclusive of timings."""
    return _held(fcntl.LOCK_SH)


def timing_slot():
    """Held while latency is timed: nothing else of this machine's workers trains or times meanwhile."""
    return _held(fcntl.LOCK_EX)
