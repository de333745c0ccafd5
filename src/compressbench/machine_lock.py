"""Keep timings apart from other work on the same machine when several workers share it.

Measured here (2 cores): a 2-thread training beside another busy process ran several times slower, and an int8 / fp32
ratio swung from 1.5x to 6x with load. So when `COMPRESSBENCH_MACHINE_LOCK` names a file (a search with several
workers, or a Ray task, sets it to a file of its node), work holds a shared lock on it and every timing an exclusive
one: any number of trainings may run together, but a timing waits until none runs, and no training starts while a
timing runs. Without the variable both are no-ops, so a single process pays nothing.

The lock is re-entrant within a process: a timing inside a step that holds the work slot (an int8 technique timing
its variants) converts the process's shared lock to an exclusive one and back (flock converts in place; not
atomically, so two processes converting at once cannot deadlock).
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

VARIABLE = "COMPRESSBENCH_MACHINE_LOCK"


class _Held(threading.local):
    handle: IO[str] | None = None
    mode: int | None = None  # fcntl.LOCK_SH or LOCK_EX while held


_held_here = _Held()


@contextmanager
def _held(mode: int) -> Iterator[None]:
    path = os.environ.get(VARIABLE)
    outer = _held_here.mode
    if not path or outer == fcntl.LOCK_EX or outer == mode:  # no lock asked for, or held strongly enough already
        yield
        return
    handle = _held_here.handle or open(path, "a+")  # noqa: SIM115 (kept open while held, closed below)
    fcntl.flock(handle, mode)  # acquire, or convert the shared lock this process holds
    _held_here.handle, _held_here.mode = handle, mode
    try:
        yield
    finally:
        if outer is None:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
            _held_here.handle, _held_here.mode = None, None
        else:
            fcntl.flock(handle, outer)
            _held_here.mode = outer


def training_slot():
    """Held while a model trains (or a recipe step runs): shared with other work, exclusive of timings."""
    return _held(fcntl.LOCK_SH)


def timing_slot():
    """Held while latency is timed: nothing else of this machine's workers trains or times meanwhile."""
    return _held(fcntl.LOCK_EX)
