"""User data: `package.module:function` or `path/to/file.py:function`, returning arrays or a DataBundle."""

from __future__ import annotations

from compressbench.data import DataBundle, RawDataset, _check_loader_output
from compressbench.imports import call_user, is_user_reference, load_reference

__all__ = ["is_user_reference", "load_user_data"]


def load_user_data(reference: str) -> RawDataset | DataBundle:
    factory = load_reference(reference, what="dataset")
    return _check_loader_output(f"dataset {reference}", call_user(reference, "dataset", factory))
