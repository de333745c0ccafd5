"""Inputs read and preprocessed in batches as they are used, into a memory-mapped array in the cache: the source
(a folder of images, a table of texts) is never held in memory whole, and a second job on the same data and
preprocessing maps the finished array instead of reading the source again."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from compressbench.cache import default_cache_dir
from compressbench.progress import bar

READ_BATCH = 256


def streamed(
    key: str, count: int, sample_shape: tuple[int, ...], dtype: str, batches: Iterable[np.ndarray], what: str
) -> np.ndarray:
    """The `count` samples that `batches` yields, written batch by batch to `<cache>/intake/<key>.npy` and mapped
    read-only (a partly written file from an interrupted read is never taken: it is renamed into place when whole)."""
    path = default_cache_dir() / "intake" / f"{key}.npy"
    if path.is_file():
        return np.load(path, mmap_mode="r")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{key}.{os.getpid()}.partial.npy")
    out = np.lib.format.open_memmap(partial, mode="w+", dtype=dtype, shape=(count, *sample_shape))
    start = 0
    with bar(what, count) as progress:
        for batch in batches:
            out[start : start + len(batch)] = batch
            start += len(batch)
            if progress is not None:
                progress.update(progress.task_ids[0], completed=start)
    out.flush()
    del out
    Path(partial).replace(path)
    return np.load(path, mmap_mode="r")
